"""Make specs/quickstart.pt: the quickstart MLP fit to cars by full-batch Adam.

Run from the repository root: ``python specs/train_quickstart.py``. Seeded,
so the same file comes out every time on the same torch build.
"""

from __future__ import annotations

import os

import torch
from vega_datasets import local_data

from nnspec.inputs import frame_batch
from nnspec.models import MLP

HERE = os.path.dirname(os.path.abspath(__file__))


def main(steps: int = 2000) -> None:
    batch = frame_batch(local_data.cars(), ["Horsepower", "Weight_in_lbs"], "Miles_per_Gallon")
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
