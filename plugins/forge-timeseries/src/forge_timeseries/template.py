"""Template ``timeseries``: a monthly forecasting project on the classic airline passengers series
(Box & Jenkins, monthly totals in thousands, 1949-1960, public domain)."""

from __future__ import annotations

AIR_PASSENGERS = [
    112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118, 115, 126, 141, 135, 125, 149, 170, 170, 158, 133,
    114, 140, 145, 150, 178, 163, 172, 178, 199, 199, 184, 162, 146, 166, 171, 180, 193, 181, 183, 218, 230, 242,
    209, 191, 172, 194, 196, 196, 236, 235, 229, 243, 264, 272, 237, 211, 180, 201, 204, 188, 235, 227, 234, 264,
    302, 293, 259, 229, 203, 229, 242, 233, 267, 269, 270, 315, 364, 347, 312, 274, 237, 278, 284, 277, 317, 313,
    318, 374, 413, 405, 355, 306, 271, 306, 315, 301, 356, 348, 355, 422, 465, 467, 404, 347, 305, 336, 340, 318,
    362, 348, 363, 435, 491, 505, 404, 359, 310, 337, 360, 342, 406, 396, 420, 472, 548, 559, 463, 407, 362, 405,
    417, 391, 419, 461, 472, 535, 622, 606, 508, 461, 390, 432,
]

CONFIG = """\
# Forecast monthly airline passengers 12 months ahead:
#   forge run --config config.yaml
# then: forge serve runs/<run>   (POST /forecast)   or   forge export runs/<run> --format onnx
recipe: lstm-forecast
data: data/air_passengers.csv
time_column: month
target: passengers
horizon: 12
window: 24
log_transform: true    # multiplicative seasonality: model log(passengers)
max_epochs: 150
patience: 25
learning_rate: 0.003
seed: 7
"""

README = """\
# {name}

A forecasting project made by `forge init timeseries`: an LSTM forecasts the next 12 months of the classic
airline passengers series (monthly totals in thousands, 1949-1960). The last 12 months are the test split,
the 12 before them the validation split; the run reports MAE, RMSE, sMAPE and MASE next to the seasonal-naive
forecast, and draws `forecast.png` in the run directory.

    forge run --config config.yaml
    forge serve runs/<run> --port 8000
    curl -s localhost:8000/forecast -H 'content-type: application/json' -d '{{}}'

Use your own series: a CSV with a time column and a numeric column; set `time_column` and `target`.
"""


def files(project_name: str) -> dict[str, str]:
    rows = ["month,passengers"] + [f"{1949 + i // 12}-{i % 12 + 1:02d}-01,{v}" for i, v in enumerate(AIR_PASSENGERS)]
    return {
        "config.yaml": CONFIG,
        "data/air_passengers.csv": "\n".join(rows) + "\n",
        "README.md": README.format(name=project_name),
        ".gitignore": "runs/\nmlflow.db\n",
    }
