"""Distillation: the teacher-backed variant's knowledge into the ResNet-18, over fresh views.

The label is "how compressed is the file" plus "how hard is this image for an ImageNet network";
the from-scratch ResNet-18 reads the second half badly from a few thousand labelled rows. Here it
is taught on every view instead ("function matching", Beyer et al. 2022, arXiv 2106.05237): each
step draws new views (random crop, flip, mixup, a random JPEG quality, blur, noise, downscale or a
mix), the teacher (the shipped EfficientNet-Lite0 variant: frozen Lite0 + trained utility head)
and the student see the same file, and the student matches the teacher's utility logit and Lite0's
ImageNet logits. No label is needed per view, so the schedule can be as long as the CPU allows:
the run checkpoints and resumes (``--resume auto``).

Pipeline: :mod:`.views` draws the files, :mod:`.teacher` scores them, :mod:`.loop` steps and
validates, :mod:`.cli` runs it and writes a checkpoint that ``image-utility export`` takes.
"""
