"""kubeloop: develop software on Kubernetes.

The library is the product; the ``kubeloop`` command is a thin layer over it. Heavy
modules are imported lazily so that ``kubeloop --help`` stays fast.
"""

from kubeloop.errors import KubeloopError

__all__ = ["KubeloopError", "__version__"]
__version__ = "0.1.0"
