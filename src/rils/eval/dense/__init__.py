"""Dense transfer (paper Tables 2, 3 and 5): fine-tuning a pre-trained trunk for semantic
segmentation (`rils eval segment`: MAE/BEiT's UperNet recipe) and for detection and instance
segmentation (`rils eval detect`: ViTDet's Mask R-CNN recipe).

    backbone.py   the pre-trained trunk as a timm ViT at the fine-tuning size (positions resampled)
    loop.py       what both fine-tunes share: layer-wise lr decay, warm-up + decay, a resumable,
                  checkpointed, DDP-ready iteration loop with a progress bar
    seg_data.py   ADE20K-layout data and MMSeg's ADE20K train and test pipelines
    seg_heads.py  the 4-level pyramid, UperNet and the auxiliary FCN head
    segment.py    the loss, sliding-window inference, mIoU as MMSeg computes it, `rils eval segment`
    det_data.py   COCO/LVIS-layout data, training targets, large-scale jitter
    vitdet.py     ViTDet's trunk (timm's samvit) + SimpleFPN + torchvision's Mask R-CNN
    detect.py     training, prediction, AP by faster-coco-eval, `rils eval detect`
"""
