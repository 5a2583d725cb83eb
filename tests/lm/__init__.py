import numpy as np

from sublocal_kernels.lm.synthetic import MarkovChain


def chain_sequences(n: int, low: int, high: int) -> list[str]:
    """n sequences of one fixed random Markov chain, lengths uniform in [low, high), reproducible."""
    lengths = np.random.default_rng(0).integers(low, high, n)
    return MarkovChain.random(1, 0.5, seed=1).sample(lengths, seed=2)
