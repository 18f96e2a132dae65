"""A few Adam steps of a small linear layer: the run the fused-Adam tests compare across
kernel tables (cuda()'s stand-in, cpu_numpy()'s native kernels) and their composites."""
import numpy as np

import needle as ndl


def train_linear_with_adam(device, weight_decay=0.0, steps=4):
    """(the layer's parameters as NumPy arrays, the optimizer's state_dict) after `steps`
    Adam steps on (layer(x) ** 2).sum(), from seed 0."""
    np.random.seed(0)
    layer = ndl.nn.Linear(6, 3, device=device)
    opt = ndl.optim.Adam(layer.parameters(), lr=0.01, beta1=0.5, weight_decay=weight_decay)
    x = ndl.Tensor(np.random.randn(8, 6).astype(np.float32), device=device)
    for _ in range(steps):
        opt.reset_grad()
        (layer(x) ** 2).sum().backward()
        opt.step()
    return [p.numpy() for p in layer.parameters()], opt.state_dict()
