import pytest
import torch


@pytest.fixture
def restore_determinism():
    """rils.train.step.compile_for_training turns on deterministic algorithms on a CPU, for the process:
    put them back as they were after the test."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(),
              torch.utils.deterministic.fill_uninitialized_memory)
    torch.set_num_threads(max(2, before[1]))
    yield
    torch.use_deterministic_algorithms(before[0])
    torch.set_num_threads(before[1])
    torch.utils.deterministic.fill_uninitialized_memory = before[2]
