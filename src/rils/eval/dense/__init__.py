"""Dense transfer (paper Tables 2, 3 and 5): fine-tuning a pre-trained trunk for semantic
segmentation (`rils eval segment`: MAE/BEiT's UperNet recipe) and for detection and instance
segmentation (`rils eval detect`: ViTDet's Mask R-CNN recipe).

    backbone.py   the pre-trained trunk as a timm ViT at the fine-tuning size (positions resampled)
    loop.py       what both fine-tunes share: layer-wise lr decay, warm-up + decay, a resumable,
                  checkpointed, DDP-ready iteration loop with a progress bar
    segment.py    ADE20K-layout data, MMSeg's pipeline, the 4-level pyramid + UperNet head, sliding
                  window inference, mIoU as MMSeg computes it
    detect.py     COCO-layout data, large-scale jitter, ViTDet's trunk + SimpleFPN + torchvision's
                  Mask R-CNN, AP by faster-coco-eval
"""
