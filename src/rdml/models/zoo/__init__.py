"""The CIFAR-sized model zoo of the papers: each builder takes (input_shape, num_classes).

Every architecture adapts to the input's channel count, so ResNet-18/50 also serve 28×28 grey
Fashion-MNIST images (the 3×3 stem keeps 28×28 resolution; global pooling absorbs the size).
"""
