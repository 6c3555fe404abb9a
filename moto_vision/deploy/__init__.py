"""From a trained task to a phone: export, quantization, parity checks, profiling and benchmarks.

Heavy optional dependencies (onnx, onnxruntime, executorch) are imported inside the functions that
need them, so importing this package stays cheap.
"""
