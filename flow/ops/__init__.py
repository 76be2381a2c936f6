"""Operations on images and arrays with no model in them: MATLAB-exact bicubic resizing
(:mod:`~flow.ops.imresize`), evaluation metrics (:mod:`~flow.ops.metrics`) and image
helpers (:mod:`~flow.ops.images`)."""
