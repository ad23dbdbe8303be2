"""The head analyses' defaults, in one place: the Python API (:func:`~ropescope.heads.scan_heads`,
:func:`~ropescope.heads.causal_test`, the views) and the command line (``heads``, ``head``) share them."""

MAX_OFFSET = 8  # offsets 0..K scored: mean attention from a token to the token K positions back
THRESHOLD = 0.5  # mean attention on its target that makes a head diagonal, previous-token, ... or a sink
HF_FRACTION = 0.125  # share of a layer's fastest chunks counted as "high frequency"
ABLATE_CHUNKS = 8  # query chunks the causal test zeroes per condition
CAUSAL_DRAWS = 5  # random draws of chunks in the causal test
VIEW_TOKENS = 40  # tokens of the prompt in one head's figures (attention map, logits, chunk norms)
REPORT_TOKENS = 24  # tokens of the prompt whose attention the HTML report shows for every head
