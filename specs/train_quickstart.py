"""Make specs/quickstart.pt: the quickstart MLP fit to cars by full-batch Adam.

Run from the repository root: ``python specs/train_quickstart.py``. Seeded,
so the same file comes out every time on the same torch build.
"""

from __future__ import annotations

import os

import torch

from nnspec.inputs.batch import load_input
from nnspec.models import MLP
from nnspec.spec.load import load_spec

HERE = os.path.dirname(os.path.abspath(__file__))


def main(steps: int = 2000) -> None:
    spec = load_spec(os.path.join(HERE, "quickstart.yaml"))
    batch = load_input(spec.input, HERE)
    torch.manual_seed(0)
    model = MLP([2, 3, 1])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(batch.x).squeeze(1), batch.y)
        loss.backward()
        opt.step()
    print(f"final mse {loss.item():.3f}")
    torch.save(model.state_dict(), os.path.join(HERE, "quickstart.pt"))


if __name__ == "__main__":
    main()
