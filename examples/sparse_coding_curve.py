"""Sparse coding of 8x8 MNIST patches: how the reconstruction error trades against the number of
non-zero coefficients, against PCA.

Sparse coding (Olshausen & Field 1996; nanogen.models.energy.sparse_coding) learns a dictionary
D of unit-norm atoms so that each patch x is D a for a code a with few non-zero entries: the code
minimises 1/2 ||x - D a||^2 + lam ||a||_1, found by FISTA (a gradient step on the squared error,
then a soft threshold that sets small coefficients exactly to zero).  The penalty lam sets the
trade: the larger it is, the fewer atoms a patch uses and the worse it is rebuilt.

The script trains a dictionary (or takes one from a run of ``nanogen train sparse-coding``,
--run DIR), then, with that dictionary fixed, codes the test patches at each penalty of --lams
and prints, per penalty, the mean number of non-zero coefficients per patch and the test
reconstruction error (mean squared error per pixel); then the error when the coefficients are
refitted by least squares on the atoms each code chose (the L1 penalty shrinks them, so part of
the error is that bias, not the choice of atoms).  Beside it, PCA with k components fitted to
training patches: the best any k-dimensional *linear* code can do.  A sparse code picks its k
atoms per patch from the whole dictionary, so at the same k it can rebuild patches better.

    python examples/sparse_coding_curve.py --out sparse_curve.png    # + sparse_curve_dictionary.png
    python examples/sparse_coding_curve.py --run runs/sparse-coding --out sparse_curve.png
"""
import argparse
import itertools
import os
import sys
import time

import numpy as np

import nanogen as ng
from nanogen.data import DataLoader, eval_dataset, load_dataset, train_transform
from nanogen.models.energy.sparse_coding import SparseCoding, fista
from nanogen.utils import plot_curves, save_image

from common import add_run_options, endless, start_run   # examples/common.py


def pca_errors(train_patches, test_patches, max_components):
    """Test MSE per pixel of PCA reconstructions mu + U_k U_k^T (x - mu), k = 1..max (NumPy)."""
    mean = train_patches.mean(0)
    _, _, vt = np.linalg.svd(train_patches - mean, full_matrices=False)
    centred = test_patches - mean
    errors = []
    for k in range(1, max_components + 1):
        basis = vt[:k].T                                         # (d, k), orthonormal
        errors.append(float(((centred - centred @ basis @ basis.T) ** 2).mean()))
    return errors


def refit_error(patches, codes, D):
    """Test MSE per pixel when each patch's coefficients are refitted by least squares on the
    atoms its sparse code chose (the L1 penalty shrinks them towards 0): NumPy, patch by patch."""
    total = 0.0
    for x, a in zip(patches, codes):
        support = np.flatnonzero(a)
        if support.size:
            coef, *_ = np.linalg.lstsq(D[:, support], x, rcond=None)
            x = x - D[:, support] @ coef
        total += float(x @ x)
    return total / patches.size


def covering_patches(model, images, device):
    """The patches that cover each image (model.cover), as a (N * P, d) Tensor."""
    return model.patches.cut(ng.tensor(images, device=device), model.cover)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", help="a run directory of `nanogen train sparse-coding`: use its "
                   "dictionary instead of training one")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--atoms", type=int, default=64)
    p.add_argument("--patch-size", type=int, default=8)
    p.add_argument("--lam", type=float, default=0.2, help="the penalty the dictionary trains at")
    p.add_argument("--lams", default="0.025,0.05,0.1,0.2,0.4,0.8",
                   help="the penalties the test patches are coded at, comma-separated")
    p.add_argument("--iters", type=int, default=200, help="FISTA steps per coding")
    p.add_argument("--test-images", type=int, default=1000)
    add_run_options(p, "sparse_curve.png", "the curve (PNG); the dictionary goes beside it "
                    "as NAME_dictionary.png")
    args = p.parse_args(argv)
    status = start_run(p, args)
    if status is not None:
        return status
    lams = sorted(float(v) for v in args.lams.split(","))

    ng.manual_seed(args.seed)
    train = load_dataset("mnist5k", "train")
    start = time.time()
    if args.run:
        from nanogen.cli import load_run
        model, config, _ = load_run(args.run, device=args.device)
        if not isinstance(model, SparseCoding):
            p.error(f"--run {args.run}: a run of {config['model']}, not of sparse coding")
        print(f"dictionary of {args.run} ({config['model']}, {model.layer.num_atoms} atoms)")
    else:
        model = SparseCoding(image_shape=train.sample_shape, patch_size=args.patch_size,
                             num_atoms=args.atoms, lam=args.lam).to(args.device)
        loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                            seed=args.seed, transform=train_transform(model.data_transform),
                            device=args.device)
        optimizers = model.configure_optimizers(args.lr)
        print(f"sparse coding of {args.patch_size}x{args.patch_size} patches, {args.atoms} "
              f"atoms, lam {args.lam}: {args.steps} steps of {args.batch_size} images on "
              f"{args.device}", flush=True)
        for step, batch in enumerate(itertools.islice(endless(loader), args.steps), 1):
            logs = model.training_step(batch, optimizers)     # FISTA codes, then a D update
            if step % 200 == 0 or step == args.steps:
                print(f"step {step:5d}  squared error {logs['loss']:.4f} per patch, "
                      f"{100 * logs['sparsity']:.1f}% of codes non-zero  "
                      f"({time.time() - start:.0f}s)", flush=True)
    model.eval()

    test = eval_dataset(load_dataset("mnist5k", "test"), "unit", seed=0)
    x_test = test.arrays[0][:args.test_images]
    x_train = eval_dataset(train, "unit", seed=0).arrays[0][:len(x_test)]   # for PCA
    patches = covering_patches(model, x_test, args.device)
    D, dim = model.layer.dictionary.detach(), model.patches.dim
    print(f"\n{len(x_test)} test images, {patches.shape[0]} patches of {dim} pixels")
    print("   lam   non-zeros per patch   test MSE per pixel   refitted on the support")
    records = []
    host_patches = patches.to("cpu").numpy().astype(np.float64)
    host_D = D.to("cpu").numpy().astype(np.float64)
    for lam in reversed(lams):                        # from few non-zeros to many
        codes = fista(patches, D, lam, args.iters)
        mse = float(((patches - codes @ D.T) ** 2).mean().item())
        nonzeros = float((codes != 0).float().sum(1).mean().item())
        refit = refit_error(host_patches, codes.to("cpu").numpy(), host_D)
        print(f"{lam:6.3f}   {nonzeros:19.2f}   {mse:18.5f}   {refit:23.5f}")
        records.append({"non-zeros per patch": nonzeros, "sparse coding (FISTA)": mse,
                        "the same atoms, refitted": refit})
    train_patches = covering_patches(model, x_train, "cpu").numpy().astype(np.float64)
    pca = pca_errors(train_patches, host_patches,
                     min(dim, max(2, int(np.ceil(records[-1]["non-zeros per patch"])))))
    print("PCA, k components:  " + "  ".join(f"k={k}: {e:.5f}" for k, e in
                                            enumerate(pca, 1) if k in (1, 2, 4, 8, 16, 32)))
    records += [{"non-zeros per patch": k, "PCA, k components": e} for k, e in enumerate(pca, 1)]
    plot_curves(records, args.out, x="non-zeros per patch",
                title="test MSE per pixel vs non-zero coefficients (8x8 MNIST patches)"
                if dim == 64 else "test MSE per pixel vs non-zero coefficients")
    stem = os.path.splitext(args.out)[0]
    atoms, nrow = model.figures(ng.tensor(x_test[:1], device=args.device))["dictionary"]
    save_image(atoms, f"{stem}_dictionary.png", nrow=nrow, scale=4)
    print(f"wrote {args.out} and {stem}_dictionary.png  ({time.time() - start:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
