"""labkit — the companion package of the Phi on-device lab.

Every notebook is a little narrative plus one to three calls into labkit:

    models    tiny Phi-3 created locally; `tiny` / folder / hub id resolution   (lab 00)
    env       the environment check                                            (lab 00)
    build     model-builder builds, cached and atomic                          (lab 01)
    bench     size, speed, perplexity and agreement of builds                  (lab 01)
    generate  the generate() API: streaming, search options, chat              (lab 04)
    course    papermill runs of the notebooks; `start_lab` for each notebook
"""

from .course import start_lab
from .profiles import get_profile

__version__ = "0.1.0"
__all__ = ["start_lab", "get_profile", "__version__"]
