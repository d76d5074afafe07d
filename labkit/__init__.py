"""labkit — the companion package of the Phi on-device lab.

Every notebook is a little narrative plus one to three calls into labkit:

    models    tiny Phi-3 created locally; `tiny` / folder / hub id resolution   (lab 00)
    env, gpu  the environment check; a real CUDA probe (nvidia-smi + a session) (lab 00)
    build     model-builder builds, cached and atomic                          (lab 01)
    bench     size, speed, perplexity, KL and agreement of builds; make bench  (lab 01)
    vision    Phi-3.5-vision encoder, ONNX export, image Q&A                   (lab 02)
    awq       AWQ on CPU (llmcompressor) and the RTN comparison                (lab 03)
    olive     Olive LoRA fine-tuning and ONNX export with adapters             (lab 03)
    generate  the generate() API: streaming, search options, chat, adapters    (lab 04)
    ui        the ipywidgets chat panel                                        (lab 04)
    report    the results table, plots and report.html                         (lab 05)
    course    papermill runs of the notebooks; `start_lab`; attendee copies
    check     the "Your turn" exercises' checks                               (labs 00-04)
    cache     content keys, verified atomic outputs, locks for shared caches  (all labs)
    data, results, paths, profiles   the course's data, results.json (typed), folders, profiles
"""

from .course import start_lab
from .profiles import get_profile

__version__ = "0.1.0"
__all__ = ["start_lab", "get_profile", "__version__"]
