# An mmpretrain classifier to onnxruntime: image batch -> class scores.
_base_ = ['./_onnxruntime_base.py']
codebase_config = dict(type='mmpretrain', task='Classification')
onnx_config = dict(dynamic_axes=dict(
    input={0: 'batch', 2: 'height', 3: 'width'}, output={0: 'batch'}))
