# An mmdet instance segmentor (Mask R-CNN, ...) to onnxruntime: image batch
# -> dets, labels and per-box mask logits (pasted into the image outside
# the graph, by mmdeploy's backend model).
_base_ = ['./detection_onnxruntime_dynamic.py']
codebase_config = dict(post_processing=dict(export_postprocess_mask=False))
onnx_config = dict(
    output_names=['dets', 'labels', 'masks'],
    dynamic_axes=dict(masks={0: 'batch', 1: 'num_dets', 2: 'height',
                             3: 'width'}))
