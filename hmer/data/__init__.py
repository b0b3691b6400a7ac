"""Data: from handwriting (online ink or pictures) to padded batches of images and tokens.

- ``inkml``: parse CROHME InkML, render ink at a normalized glyph scale; ``load_image`` reads
  any input file (picture or InkML) as pixels.
- ``preprocess``: THE image path (training and inference): any picture -> ink 255 on 0, cropped,
  glyph-scale normalized.
- ``latex`` / ``vocab``: canonical LaTeX tokens and their ids.
- ``datasets``: InkML folders, BTTR/CoMER layouts (folder or zip), image folder + table.
- ``batching``: size-bucketed batches under a pixel budget; padding collate.
- ``augment``: training augmentation of images and of online ink.

Submodules are imported on demand (this package imports nothing), so light users such as the
``hmer`` command line do not pay for OpenCV or torch.
"""
