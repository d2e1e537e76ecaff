"""The MLflow pyfunc model of a registered forge artifact (models-from-code: ``forge registry add`` logs this file as
the ``python_model``, with the artifact directory as the MLflow artifact ``forge_artifact``).

    model = mlflow.pyfunc.load_model("models:/NAME@production")
    model.predict(pandas.DataFrame({"text": ["great film", "dull"]}))   # → a DataFrame
    model.predict([{"text": "great film"}])                              # → a list of dicts

Rows go to ``forge.load_predictor(forge.Artifact.load(dir)).predict(rows)``: the predictor of the plugin serving the
artifact's kind (classifiers: ``{"text"}`` → ``{"label", "scores"}``; forecasters and language models: the rows
their server takes). ``mlflow.pyfunc.load_model(uri, model_config={"predictor_options": {...}})`` passes options to
the predictor.

This file is executed by MLflow when the model is loaded (it needs ``forge-core`` and the plugin of the artifact's
kind installed, which the model's requirements name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

ARTIFACT_KEY = "forge_artifact"
OPTIONS_KEY = "predictor_options"


def to_rows(model_input: Any) -> list[dict[str, Any]]:
    """A pandas DataFrame, a list of dicts or one dict → a list of dicts (NaN cells of a DataFrame dropped)."""
    if isinstance(model_input, pd.DataFrame):
        import math

        return [{str(k): v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
                for row in model_input.to_dict(orient="records")]
    if isinstance(model_input, dict):
        return [model_input]
    if isinstance(model_input, list) and all(isinstance(row, dict) for row in model_input):
        return model_input
    raise TypeError(f"forge models take a pandas DataFrame or a list of dicts, not {type(model_input).__name__}")


class ForgeModel(PythonModel):
    """Predicts with the predictor forge picks for the artifact's kind."""

    def load_context(self, context: Any) -> None:
        import forge

        options = dict((getattr(context, "model_config", None) or {}).get(OPTIONS_KEY) or {})
        self.artifact = forge.Artifact.load(Path(context.artifacts[ARTIFACT_KEY]))
        self.predictor = forge.load_predictor(self.artifact, options or None)

    # The hint is pd.DataFrame (a list of dicts works as well): a type MLflow neither validates nor converts, so
    # rows reach the predictor as given (its list-of-dicts hints reject DataFrames of rows).
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        outputs = self.predictor.predict(to_rows(model_input))
        if isinstance(model_input, pd.DataFrame):
            return pd.DataFrame(outputs)
        return outputs


mlflow.models.set_model(ForgeModel())
