"""Model export (the ``train`` extra): Keras -> ONNX with parity check and contract."""
