"""forge-timeseries: LSTM forecasting for forge. Registered by reference: importing this imports no torch."""

from __future__ import annotations

import forge

__version__ = "0.1.0"


@forge.hookimpl
def register_recipes(register: forge.Register) -> None:
    register(forge.Recipe(name="lstm-forecast", config="forge_timeseries.recipe:ForecastConfig",
                          train="forge_timeseries.recipe:train",
                          summary="multi-step LSTM forecaster from CSV/Parquet (MASE vs seasonal naive)"))


@forge.hookimpl
def register_templates(register: forge.Register) -> None:
    register(forge.Template(name="timeseries", files="forge_timeseries.template:files",
                            summary="monthly forecasting project (airline passengers 1949-1960)"))


@forge.hookimpl
def register_servers(register: forge.Register) -> None:
    register(forge.Server(name="forecast", accepts=("forecaster",),
                          create_app="forge_timeseries.serve:create_forecast_app",
                          summary="POST /forecast: the next horizon values with timestamps"))
