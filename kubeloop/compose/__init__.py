"""Compose projects into kubeloop projects: ``kubeloop init --compose``.

``load_compose`` finds and merges the compose files (override file, ``.env``
interpolation, shape checks); ``translate`` turns services into Kubernetes objects and
kubeloop settings, with a :class:`Note` for every decision and for everything that has
no translation; ``init_from_compose`` writes the files (never over existing ones).
"""

from kubeloop.compose._load import load_compose
from kubeloop.compose._translate import Note, Translation, translate
from kubeloop.compose._write import InitResult, init_from_compose, print_result, project_files

__all__ = [
    "InitResult",
    "Note",
    "Translation",
    "init_from_compose",
    "load_compose",
    "print_result",
    "project_files",
    "translate",
]
