# mmdeploy settings shared by our onnxruntime deploy configs (mmdeploy's
# keys: onnx_config, codebase_config, backend_config). The rewriters module
# makes mmdeploy 1.3 export through the TorchScript exporter on torch>=2.9.
custom_imports = dict(
    imports=['mmpoolformer', 'mmpoolformer.deployment.mmdeploy_rewriters'],
    allow_failed_imports=False)
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    optimize=True)
backend_config = dict(type='onnxruntime')
