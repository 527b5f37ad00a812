"""Clinical documents coded into sets of codes, one case per (model, document).

pytest-medcode parametrizes ``medcode_document`` from ``--medcode-documents FILE`` (JSONL/CSV/Parquet with
id, text, codes, system) or, without a file, from synthetic notes generated with ``--medcode-seed``
(``--medcode-document-sample`` of them, 50 by default). The model is given the text only; a case passes
when the set of codes it answers is exactly the gold set. The session report adds micro and macro
precision, recall and F1, category-level F1, invalid codes and per-code F1, with confidence intervals.
"""


def test_document_coding(medcode_document, medcode):
    medcode.check_document(medcode_document)
