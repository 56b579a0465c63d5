"""A learner's engine whose helper module imports the engine file by name."""
from engine.core import Config, Function, Variable, square  # noqa: F401

import learner_helpers  # noqa: E402 - it imports this file back, by its name

ONE_COPY = learner_helpers.engine_variable() is Variable
