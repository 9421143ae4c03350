"""Training: generated-label training of the segmentation U-Net and the small-FOV labeler, the
real-MRI reader, fine-tuning and evaluation.
"""
