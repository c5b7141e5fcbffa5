"""Image loading that survives an unreadable file during training.

mmcv's ``LoadImageFromFile`` raises on a file it cannot decode (a zero-byte
or truncated image) and kills a run at whatever iteration first draws it,
hours in. :class:`LoadImageOrSkip` warns once per file, naming it and how
many were skipped so far, and returns ``None``: mmengine's ``BaseDataset``
then draws another sample for training. (A test-time pipeline must not
return ``None``; the data check of ``tools/train.py`` / ``tools/test.py``
finds these files before the first iteration.)
"""
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from mmpoolformer.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadImageOrSkip(LoadImageFromFile):
    """``LoadImageFromFile`` (same arguments) that skips an unreadable image
    with a warning instead of raising."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.skipped = set()  # per worker process: each warns on its own

    def transform(self, results):
        try:
            loaded = super().transform(results)
        except Exception as exc:  # noqa: BLE001  what decoders raise varies
            loaded, reason = None, f'{type(exc).__name__}: {exc}'
        else:
            reason = 'it is not an image OpenCV / the decoder can read'
        if loaded is not None:
            return loaded
        path = results.get('img_path')
        if path not in self.skipped:
            self.skipped.add(path)
            print_log(f'Skipped unreadable image {path} ({reason}); '
                      f'{len(self.skipped)} skipped so far in this data '
                      'process. Replace or remove it from the annotations.',
                      logger='current', level=30)
        return None
