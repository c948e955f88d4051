"""Checks that need several ranks, run by tests/test_distributed.py as
``mpiexec -n 2 python -m tests.mpi_worker CHECK``.  Every rank runs the check; rank 0 prints one
JSON line with what the test asserts."""
import json
import sys

import numpy as np

import nanogen as ng
from nanogen import distributed, nn


def sync_batchnorm():
    """SyncBatchNorm on each rank's half of a batch vs BatchNorm2d on the whole batch: outputs,
    running statistics, input and weight gradients, and a gradient of a gradient."""
    world = distributed.init()
    rng = np.random.default_rng(0)
    full = rng.normal(2.0, 3.0, (6, 3, 4, 5))
    upstream = rng.normal(size=full.shape)
    n = len(full) // world.size
    rows = slice(world.rank * n, (world.rank + 1) * n)

    def run(layer, x_array, g_array):
        x = ng.tensor(x_array, requires_grad=True)
        y = layer(x)
        loss = (y * ng.tensor(g_array)).sum()
        gx, gw = ng.autograd.grad(loss, [x, layer.weight], create_graph=True)
        second = ng.autograd.grad((gx * gx).sum(), [layer.weight])[0]
        return y.detach().numpy(), gx.detach().numpy(), gw.detach().numpy(), second.numpy()

    reference = nn.BatchNorm2d(3).double()
    with ng.no_grad():
        reference.weight.copy_(ng.tensor([0.5, 1.5, -1.0], dtype=ng.float64))
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm2d(3).double())
    sync.load_state_dict(reference.state_dict())
    y_ref, gx_ref, gw_ref, second_ref = run(reference, full, upstream)
    y, gx, gw, second = run(sync, full[rows], upstream[rows])
    # the loss of the run is the sum of the ranks' losses: weight gradients add up over ranks
    total_gw = gw.copy()
    world.allreduce_(total_gw)
    total_second = second.copy()
    world.allreduce_(total_second)
    report = {
        "output": float(np.abs(y - y_ref[rows]).max()),
        "input_grad": float(np.abs(gx - gx_ref[rows]).max()),
        "weight_grad": float(np.abs(total_gw - gw_ref).max()),
        "second_order": float(np.abs(total_second - second_ref).max()),
        "running_mean": float(np.abs(sync.running_mean.numpy()
                                     - reference.running_mean.numpy()).max()),
        "running_var": float(np.abs(sync.running_var.numpy()
                                    - reference.running_var.numpy()).max()),
        "type": type(sync).__name__,
    }
    return report


def average_gradients():
    """Buckets and missing gradients: rank r's gradient of p_i is (r + 1) * (i + 1), rank 1 has
    none for p_1 and nobody has one for p_2."""
    world = distributed.init()
    params = [nn.Parameter(ng.zeros(3)), nn.Parameter(ng.zeros(2, 2)),
              nn.Parameter(ng.zeros(4)), nn.Parameter(ng.zeros(5, dtype=ng.float64))]
    for i, p in enumerate(params):
        if i == 2 or (i == 1 and world.rank == 1):
            continue
        p.grad = ng.full(p.shape, float((world.rank + 1) * (i + 1)), dtype=p.dtype)
    reduced = distributed.average_gradients(params, world, bucket_bytes=16)
    return {"grads": [None if p.grad is None else p.grad.numpy().ravel().tolist()
                      for p in params],
            "dtypes": [None if p.grad is None else str(p.grad.dtype) for p in params],
            "bytes": reduced}


def sharded_draws():
    """Draws inside ng.random.sharded on 2 ranks, gathered, against one process's draws."""
    world = distributed.init()
    ng.manual_seed(3)
    with ng.random.sharded(world.rank, world.size):
        mine = [ng.randn(2, 3).numpy(), ng.rand(2).numpy(), ng.randint(0, 9, (2, 2)).numpy(),
                ng.randn(()).numpy().reshape(1)]
    pieces = world.gather(mine)
    if world.rank:
        return None
    ng.manual_seed(3)
    single = [ng.randn(4, 3).numpy(), ng.rand(4).numpy(), ng.randint(0, 9, (4, 2)).numpy()]
    joined = [np.concatenate([p[k] for p in pieces]) for k in range(3)]
    scalars = [float(p[3][0]) for p in pieces]
    return {"same": [bool(np.array_equal(a, b)) for a, b in zip(joined, single)],
            "scalars_equal": scalars[0] == scalars[1]}


if __name__ == "__main__":
    result = globals()[sys.argv[1]]()
    if distributed.world().rank == 0:
        print(json.dumps(result))
