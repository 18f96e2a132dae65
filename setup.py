"""Install needle, gan and apps. `pip install -e ".[gan,test]"` for everything."""
from setuptools import find_packages, setup

GAN = ["safetensors>=0.4", "tqdm>=4.60", "Pillow>=9", "matplotlib>=3.5", "scipy>=1.9"]

setup(
    name="needle-gan",
    version="0.1.0",
    description="needle: a from-scratch autograd and NN library (CMU 10-414/714 style), "
                "and gan: adversarial losses as modules",
    packages=find_packages(include=["needle", "needle.*", "gan", "gan.*", "apps", "apps.*"]),
    python_requires=">=3.9",
    install_requires=["numpy>=1.24"],
    extras_require={
        "io": ["safetensors>=0.4"],
        "gan": GAN,
        "test": ["pytest>=7", "hypothesis>=6.80", "numdifftools>=0.9"] + GAN,
    },
)
