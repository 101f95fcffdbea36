"""Two variants of one training step timed against each other for the small A/B scripts next to this
file: warm-up steps of each, then repetitions that alternate which variant goes first, one process."""
from rils.bench import _timed, ratio_interval


def interleaved_times(step, data, dev, variants: dict, repeats: int, steps: int = 3, warmup: int = 2):
    """variants: two names, each mapped to a context-manager factory that puts the code in that
    variant while it is open. Returns each variant's per-repetition step times and the bootstrap
    interval of the first's median step time over the second's."""
    first, second = variants
    times = {name: [] for name in variants}

    def run(name, n):
        with variants[name]():
            return _timed(step, data, dev, n)

    for name in variants:
        run(name, warmup)
    for r in range(repeats):
        for name in ((first, second) if r % 2 == 0 else (second, first)):
            times[name].append(run(name, steps))
    return times, ratio_interval(times[first], times[second])
