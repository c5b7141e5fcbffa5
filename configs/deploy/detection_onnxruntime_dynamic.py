# An mmdet detector (RetinaNet, ...) to onnxruntime, NMS in the graph:
# image batch -> dets (x1, y1, x2, y2, score) and labels. The model's
# test_cfg (score_thr, nms iou_threshold, max_per_img) takes precedence over
# the thresholds below, as in mmdeploy.
_base_ = ['./_onnxruntime_base.py']
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1))
onnx_config = dict(
    output_names=['dets', 'labels'],
    dynamic_axes=dict(
        input={0: 'batch', 2: 'height', 3: 'width'},
        dets={0: 'batch', 1: 'num_dets'},
        labels={0: 'batch', 1: 'num_dets'}))
