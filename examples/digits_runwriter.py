"""Log a small training run by hand with RunWriter (no probes): an MLP on sklearn's digits.

    python examples/digits_runwriter.py runs/digits-by-hand

Writes train/loss, val/acc and per-layer activation statistics every 10 steps.
"""

from __future__ import annotations

import sys

import torch
from sklearn.datasets import load_digits

from diagnostics import RunWriter


def main(run_dir: str = "runs/digits-by-hand", steps: int = 300) -> None:
    torch.manual_seed(0)
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:], y[1400:]
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    meta = {"config": {"lr": 1e-3, "steps": steps, "batch": 64}, "model_summary": str(model)}
    with RunWriter(run_dir, meta=meta) as writer:
        for step in range(steps):
            idx = torch.randint(0, len(x_train), (64,))
            loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 10 == 0:
                with torch.no_grad():
                    h = x_val
                    for name, layer in model.named_children():
                        h = layer(h)
                        if isinstance(layer, torch.nn.Tanh):
                            writer.log(
                                step,
                                {
                                    "act/mean": h.mean(),
                                    "act/std": h.std(),
                                    "act/saturated_frac": (h.abs() > 0.99).float().mean(),
                                },
                                layer=name,
                            )
                    acc = (h.argmax(1) == y_val).float().mean()
                writer.log(step, {"train/loss": loss.detach(), "val/acc": acc})


if __name__ == "__main__":
    main(*sys.argv[1:2])
