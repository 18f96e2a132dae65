"""Install needle, gan and apps. `pip install -e ".[gan,test]"` for everything.

`pip install -e .` and `pip install .` also build needle's native CPU backend
(src/ndarray_backend_cpu.cc, the pybind11 module needle.backend_ndarray.ndarray_backend_cpu)
with CMake when `cmake` and a C++ compiler are on the machine; the same build by hand is

    cmake -S . -B build && cmake --build build -j2

Without them, or if the build fails, the install goes on with a warning and `cpu()` runs the
NumPy implementation of the same interface. NEEDLE_NATIVE=0 skips the build; NEEDLE_NATIVE=1
makes a failed build an error (CI uses it to catch a broken native backend).
"""
import os
import shutil
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
# One console script per app: needle-train-dcgan runs `python -m apps.train_dcgan`, and so on.
APPS = ["train_dcgan", "train_cgan", "train_wgan_gp", "train_cyclegan", "sample", "evaluate",
        "translate", "train_classifier", "train_dann", "train_pix2pix", "probe_discriminator",
        "train_aae", "train_stylegan"]
GAN = ["safetensors>=0.4", "tqdm>=4.60", "Pillow>=10.1", "matplotlib>=3.5", "scipy>=1.9"]
DISTRIBUTED = ["mpi4py>=4.0", "mpich"]


class CMakeExtension(Extension):
    """A module that a CMake target builds (no sources for setuptools to compile).

    optional: setuptools then neither fails on a build error nor looks for a module that
    was not built when it copies modules next to the sources (editable installs).
    """

    def __init__(self, name, target):
        super().__init__(name, sources=[], optional=True)
        self.target = target


class CMakeBuild(build_ext):
    """Runs CMake for each CMakeExtension; a missing toolchain is a warning, not an error."""

    def build_extension(self, ext):
        mode = os.environ.get("NEEDLE_NATIVE", "auto")
        if mode == "0":
            return self._skip(ext, "NEEDLE_NATIVE=0")
        cmake = shutil.which("cmake")
        if cmake is None:
            return self._skip(ext, "cmake not found", required=mode == "1")
        out_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
        build_dir = os.path.join(os.path.abspath(self.build_temp), "cmake")
        configure = [cmake, "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                     f"-DPython_EXECUTABLE={sys.executable}",
                     f"-DNEEDLE_BACKEND_OUTPUT_DIR={out_dir}"]
        build = [cmake, "--build", build_dir, "--config", "Release", "--target", ext.target,
                 "-j", str(os.cpu_count() or 2)]
        print(f"needle: building {ext.name} with CMake (about a minute)", flush=True)
        try:
            subprocess.run(configure, check=True)
            subprocess.run(build, check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            return self._skip(ext, f"the CMake build failed ({error})", required=mode == "1")

    def _skip(self, ext, why, required=False):
        if required:
            raise RuntimeError(f"needle: {ext.name} was not built: {why}")
        print(f"WARNING: needle: {ext.name} not built: {why}; cpu() will use the NumPy "
              "implementation", file=sys.stderr, flush=True)

    def get_outputs(self):
        # Only what was built: a skipped module must not be looked for by install/wheel.
        return [path for path in super().get_outputs() if os.path.exists(path)]


setup(
    name="needle-gan",
    version="0.1.0",
    description="needle: a from-scratch autograd and NN library (CMU 10-414/714 style), "
                "and gan: adversarial losses as modules",
    packages=find_packages(include=["needle", "needle.*", "gan", "gan.*", "apps", "apps.*"]),
    ext_modules=[CMakeExtension("needle.backend_ndarray.ndarray_backend_cpu",
                                target="ndarray_backend_cpu")],
    cmdclass={"build_ext": CMakeBuild},
    entry_points={"console_scripts": [f"needle-{app.replace('_', '-')} = apps.{app}:main"
                                      for app in APPS]},
    python_requires=">=3.9",
    install_requires=["numpy>=1.24"],
    extras_require={
        "io": ["safetensors>=0.4"],
        "gan": GAN,
        # --tensorboard: event files through tensorboardX (a standalone writer)
        "tensorboard": ["tensorboardX>=2.6"],
        # needle.distributed and --distributed: mpi4py over MPICH (the wheel has mpiexec)
        "distributed": DISTRIBUTED,
        # websocket-client: the report's browser test reads Chromium's DevTools protocol;
        # tensorboard: its EventAccumulator reads the event files back; mpi4py and mpich:
        # the mpiexec -n 2 tests; threadpoolctl: the benchmarks record which BLAS kernels ran
        "test": ["pytest>=7", "hypothesis>=6.80", "numdifftools>=0.9", "threadpoolctl>=3.1",
                 "websocket-client>=1.6", "tensorboardX>=2.6", "tensorboard>=2.14"]
                + GAN + DISTRIBUTED,
    },
)
