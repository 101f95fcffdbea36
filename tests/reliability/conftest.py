import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """In-process training on one intra-op thread: on a shared 2-core machine, 2 threads spin-wait
    for each other and a 2-second run can take a minute."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
