"""The trained weights (bench/insights_train.py writes them; see docs/ANALYTICS_MODELS.md)."""

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent
