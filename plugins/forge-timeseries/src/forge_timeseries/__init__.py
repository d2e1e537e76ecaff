"""forge-timeseries: forecasting for forge (LSTM and statsforecast). Registered by reference: importing this imports
no torch, pandas or statsforecast."""

from __future__ import annotations

import forge

__version__ = "0.1.0"

FORECASTER_KINDS = ("forecaster", "stat-forecaster", "onnx-forecaster")


@forge.hookimpl
def register_recipes(register: forge.Register) -> None:
    register(forge.Recipe(name="lstm-forecast", config="forge_timeseries.recipe:ForecastConfig",
                          train="forge_timeseries.recipe:train",
                          summary="LSTM forecaster, one series or a panel, with intervals and statistical baselines"))
    register(forge.Recipe(name="stat-forecast", config="forge_timeseries.stat_recipe:StatForecastConfig",
                          train="forge_timeseries.stat_recipe:train",
                          summary="statsforecast AutoETS/AutoARIMA/AutoTheta/SeasonalNaive per series, with intervals"))


@forge.hookimpl
def register_templates(register: forge.Register) -> None:
    register(forge.Template(name="timeseries", files="forge_timeseries.template:files",
                            summary="monthly forecasting project (airline passengers 1949-1960)"))


@forge.hookimpl
def register_servers(register: forge.Register) -> None:
    register(forge.Server(name="forecast", accepts=("forecaster", "stat-forecaster"),
                          create_app="forge_timeseries.serve:create_forecast_app",
                          predict="forge_timeseries.serve:create_predictor",
                          summary="POST /forecast: the next horizon values with timestamps and intervals"))


@forge.hookimpl
def register_evaluators(register: forge.Register) -> None:
    register(forge.Evaluator(name="backtest", accepts=FORECASTER_KINDS,
                             evaluate="forge_timeseries.backtest:evaluate",
                             summary="rolling-origin backtest: MAE/RMSE/sMAPE/MASE and coverage vs statistical "
                                     "baselines"))
