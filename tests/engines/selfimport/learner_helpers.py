import learner_engine


def engine_variable():
    return learner_engine.Variable
