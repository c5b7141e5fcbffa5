# An mmseg segmentor (Semantic FPN, UPerNet) to onnxruntime: image batch ->
# label map (argmax in the graph).
_base_ = ['./_onnxruntime_base.py']
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=True)
onnx_config = dict(dynamic_axes=dict(
    input={0: 'batch', 2: 'height', 3: 'width'},
    output={0: 'batch', 2: 'height', 3: 'width'}))
