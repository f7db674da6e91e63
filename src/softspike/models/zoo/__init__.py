"""The model zoo: spec files shipped with softspike, addressable by name (`softspike train mnist_fc`)."""
