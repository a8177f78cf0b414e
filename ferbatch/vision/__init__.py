"""Vision: box maths (:mod:`.boxes`: the one IoU and NMS), detection and classification pre- and
post-processing over a :class:`ferbatch.specs.Runner` (:mod:`.detect`, :mod:`.classify`), and the
face tracker (:mod:`.track`). Pure NumPy/OpenCV: opens no files, starts no Ray."""
