"""Faces in ordinary photos: detect, align to the training framing, paste back, check identity.

The models were trained on aligned crops (CelebA's framing, or the synthetic generator's, which
copies it). A photo only reaches a model after the same framing: :mod:`detect` finds faces and
their 5 landmarks (dlib HOG + dlib's 5-point shape predictor), :mod:`template` measures where the
training faces' landmarks sit, :mod:`align` warps each face onto that template at
``data.image_size`` and warps the model's output back into the photo under a soft mask, and
:mod:`identity` measures with dlib's 128-d face descriptor whether the output is still the same
person. dlib and its models come from the pinned ``dlib-bin`` and ``face-recognition-models``
packages: nothing is downloaded at run time.
"""
