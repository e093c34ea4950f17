"""One module per backend, each the only importer of its library (see :mod:`latbench.profiling.base`).

``_timing`` holds the timing loops and cache flushers the backends share;
``_export`` the ONNX export shared by onnxruntime and tensorrt.
"""
