"""The DCGAN paper's initialisation, chosen by layer type (never by class-name strings)."""
from needle import init, nn

__all__ = ["dcgan_init"]


def dcgan_init(module, std=0.02):
    """Conv weights ~ N(0, std^2), norm weights ~ N(1, std^2), biases 0 (Radford et al.)."""
    for layer in [module, *module._children()]:
        if isinstance(layer, (nn.Conv, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            _refill(layer.weight, mean=0.0, std=std)
            if layer.bias is not None:
                _refill(layer.bias, mean=0.0, std=0.0)
        elif isinstance(layer, (nn.BatchNorm1d, nn.InstanceNorm2d)) \
                and getattr(layer, "weight", None) is not None:
            _refill(layer.weight, mean=1.0, std=std)
            _refill(layer.bias, mean=0.0, std=0.0)
    return module


def _refill(parameter, mean, std):
    parameter.data = init.normal(*parameter.shape, mean=mean, std=std,
                                 device=parameter.device, dtype=parameter.dtype)
