"""`rils bench`: train-step throughput, step time, peak memory and FLOPs per method, measured side by
side with open_clip's own CLIP model and ClipLoss at the same sizes and precision; also the bf16 and
`torch.compile` speed-ups, a data worker's rate and an operator profile. One module per measurement
(`step_time`, `peak_memory`, `bf16_speedup`, `compile_speedup`, `data_worker`, `op_profile`) over the
shared pieces: what is timed (`steps`), how (`timing`), how sure (`intervals`) and on what (`machine`).

The underscored names below are re-exported because the scripts under benchmarks/perf/ and the tests
import them from here."""
from .bf16_speedup import run_precision_bench
from .compile_speedup import run_compile_bench
from .data_worker import bench_data
from .intervals import ratio_interval, verdict
from .machine import _machine as _machine  # noqa: F401
from .machine import cpu_isa, source_commit
from .op_profile import profile_step
from .step_time import RATIOS, Measurement, format_table, run_bench
from .steps import OpenClipStep, RilsStep
from .steps import _batch as _batch  # noqa: F401
from .timing import PEAK_BF16_TFLOPS, peak_tflops
from .timing import _timed as _timed  # noqa: F401

__all__ = ["Measurement", "OpenClipStep", "PEAK_BF16_TFLOPS", "RATIOS", "RilsStep", "bench_data", "cpu_isa",
           "format_table", "peak_tflops", "profile_step", "ratio_interval", "run_bench", "run_compile_bench",
           "run_precision_bench", "source_commit", "verdict"]
