"""The medical code querying benchmark (Soroush et al., NEJM AI 2024), one case per code.

pytest-medcode parametrizes ``medcode_case`` from the command line: ``--model`` (repeatable),
``--medcode-system``, ``--medcode-sample`` ... Each case gives the model the official description
of a code and passes when the model answers with exactly that code. The session report adds
validity, fabrication, length and digit agreement, with confidence intervals.
"""


def test_code_query(medcode_case, medcode):
    medcode.check(medcode_case)
