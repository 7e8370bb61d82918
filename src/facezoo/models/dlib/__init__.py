"""Readers for dlib's model files (CC0 models of face-recognition-models 0.3.0), written from dlib's format.

serialize       dlib's primitive encoding (packed integers, float_details, strings, matrices, DNN tensors)
net             the DNN layer stream of a network type (its layer list), the ResNet and MMOD layer lists
torch_net       a layer list as a torch module (tags, skips, add_prev with dlib's zero padding)
shape_predictor the regression-tree cascade files and their evaluation (numpy)
convert         .dat -> facezoo files (checkpoint, detector weights, landmarker arrays)
No dlib is needed at run time; the tests compare with dlib itself (dlib-bin).
"""
