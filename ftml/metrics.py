"""Automatic metrics over plain strings, with bootstrap confidence intervals. No Django here.

Every metric is on a 0-100 scale, per example and per corpus. Each prediction is scored against
every reference for its input (multi-reference, as in the E2E NLG Challenge): exact match and
ROUGE-L take the best reference, BLEU and chrF use sacrebleu's multi-reference statistics. An
empty prediction, or an input whose references are all empty, scores 0 per example.

Metrics and their sources:
    exact_match  100 if the normalised prediction equals a normalised reference (see normalize;
                 SQuAD, Rajpurkar et al. 2016); corpus: mean.
    bleu         BLEU (Papineni et al. 2002) by sacrebleu (Post 2018); corpus BLEU from summed
                 n-gram statistics, per example sentence BLEU with effective order.
    chrf         chrF (Popović 2015) by sacrebleu; corpus chrF from summed character n-gram
                 statistics, per example sentence chrF.
    rouge_l      ROUGE-L F-measure (Lin 2004) by rouge-score with a Unicode tokenizer
                 (RougeTokenizer); best reference; corpus: mean.
    json_valid / json_schema_valid / regex:<name>: 100 or 0 per example; corpus: mean.

METRICS is the one registry of these metrics (name, label, direction, aggregation); metric_spec
looks one up, scored_metrics says which a set of scoring options produces, and
propose_primary_metric picks the metric a dataset's verdicts are decided on from its outputs.
"""
import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import version

import numpy as np
import regex
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from nltk.stem import porter
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from .stats import bootstrap_ci, mcnemar, paired_bootstrap

ENGLISH_ARTICLES = frozenset({"a", "an", "the"})


def _language_code(language: str) -> str:
    # "zh-Hant", "pt_BR", "EN" -> the ISO 639-1 primary subtag.
    return re.split(r"[-_]", language.strip().lower(), maxsplit=1)[0]


def normalize(text: str, language: str = "en") -> str:
    """Normalised form used by exact match (SQuAD's normalize_answer, Rajpurkar et al. 2016, on Unicode).

    Steps, in order: Unicode NFKC; casefold; delete every character of a Unicode punctuation
    category (P*: ``.,!?'"-()`` and also ``。、「」`` ...; symbols such as ``$ % +`` stay);
    for English (``language`` "en") drop the whole words "a", "an", "the" ("an apple" -> "apple",
    "theatre" stays); collapse runs of whitespace to one space and strip.

    Args:
        text: any string.
        language: ISO 639-1 code; articles are removed only for "en".
    Returns:
        The normalised string (possibly empty).
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(char for char in text if not unicodedata.category(char).startswith("P"))
    words = text.split()
    if _language_code(language) == "en":
        words = [word for word in words if word not in ENGLISH_ARTICLES]
    return " ".join(words)


def _is_empty(text: str | None) -> bool:
    return text is None or not text.strip()


def exact_match(prediction: str, references: Sequence[str], language: str = "en") -> float:
    """100 if normalize(prediction) equals normalize(r) for some non-empty reference r, else 0.

    Empty (blank) predictions and blank references never match. See normalize for the rules.
    """
    if _is_empty(prediction):
        return 0.0
    target = normalize(prediction, language)
    return 100.0 if any(target == normalize(r, language) for r in references if not _is_empty(r)) else 0.0


@cache
def _mecab_available(language: str) -> bool:
    # sacrebleu imports MeCab lazily and raises when the tokenizer is built without the extras
    # (sacrebleu[ja] / sacrebleu[ko]); the dictionary checks are asserts.
    try:
        if language == "ja":
            from sacrebleu.tokenizers.tokenizer_ja_mecab import TokenizerJaMecab as Tokenizer
        else:
            from sacrebleu.tokenizers.tokenizer_ko_mecab import TokenizerKoMecab as Tokenizer
        Tokenizer()
    except (ImportError, RuntimeError, AssertionError, OSError):
        return False
    return True


def bleu_tokenizer(language: str = "en") -> str:
    """sacrebleu tokenizer name for a target language (ISO 639-1).

    "zh" -> "zh"; "ja" -> "ja-mecab" and "ko" -> "ko-mecab" when MeCab and its dictionary are
    installed (sacrebleu[ja], sacrebleu[ko]), else "char"; anything else -> "13a" (sacrebleu's
    default, mteval-v13a).
    """
    code = _language_code(language)
    if code == "zh":
        return "zh"
    if code in ("ja", "ko"):
        return f"{code}-mecab" if _mecab_available(code) else "char"
    return "13a"


# Scripts written without spaces between words: one token per character (grapheme: a base
# character with its combining marks). Other scripts: runs of Unicode word characters (the
# `regex` module's \w follows Unicode TR 18 and, unlike `re`, keeps combining marks such as
# Devanagari vowel signs inside the word).
_NO_SPACE_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_ROUGE_TOKEN = regex.compile(rf"[{_NO_SPACE_SCRIPTS}]\p{{M}}*|(?:(?![{_NO_SPACE_SCRIPTS}])\w)+")


class RougeTokenizer:
    """Tokenizer for rouge_scorer.RougeScorer(tokenizer=...) that keeps non-Latin scripts.

    rouge-score's default tokenizer keeps only [a-z0-9] and so scores Chinese, Arabic, Russian or
    Hindi text as empty. This one applies NFKC and lower-cases, takes runs of Unicode word
    characters as tokens, and makes each Han, kana, Hangul, Thai, Lao, Khmer or Myanmar character
    (with its combining marks) a token of its own. With ``stem=True`` (English only) tokens longer
    than 3 characters are Porter-stemmed, as rouge-score does (nltk's PorterStemmer), so plain
    ASCII English tokenizes as rouge-score's default tokenizer with use_stemmer=True.
    """

    def __init__(self, stem: bool = False):
        self._stemmer = porter.PorterStemmer() if stem else None

    def tokenize(self, text: str) -> list[str]:
        tokens = _ROUGE_TOKEN.findall(unicodedata.normalize("NFKC", text).lower())
        if self._stemmer is not None:
            tokens = [self._stemmer.stem(token) if len(token) > 3 else token for token in tokens]
        return tokens


def rouge_scorer_for(language: str = "en") -> rouge_scorer.RougeScorer:
    """A rouge-score ROUGE-L scorer with RougeTokenizer; stemming only for English."""
    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=RougeTokenizer(stem=_language_code(language) == "en"))


def rouge_l(prediction: str, references: Sequence[str], language: str = "en", scorer=None) -> float:
    """ROUGE-L F-measure (Lin 2004) x 100 against the best non-empty reference; 0 if either side is empty."""
    references = [r for r in references if not _is_empty(r)]
    if _is_empty(prediction) or not references:
        return 0.0
    scorer = scorer or rouge_scorer_for(language)
    return 100 * scorer.score_multi(references, prediction)["rougeL"].fmeasure


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def json_valid(prediction: str) -> float:
    """100 if the whole prediction parses as JSON (RFC 8259, json.loads; NaN/Infinity refused), else 0.

    No code fences or surrounding prose are stripped: the output must be JSON itself.
    """
    try:
        json.loads(prediction, parse_constant=_reject_constant)
    except ValueError:  # json.JSONDecodeError is a ValueError
        return 0.0
    return 100.0


def json_schema_validator(schema: Mapping) -> Draft202012Validator:
    """A jsonschema Draft 2020-12 validator for ``schema``; ValueError if the schema itself is invalid."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"output schema is not a valid JSON Schema (Draft 2020-12): {exc.message}") from exc
    return Draft202012Validator(schema)


def json_schema_valid(prediction: str, validator: Draft202012Validator) -> float:
    """100 if the prediction parses as JSON and the validator (json_schema_validator) accepts it, else 0."""
    try:
        instance = json.loads(prediction, parse_constant=_reject_constant)
    except ValueError:
        return 0.0
    return 100.0 if validator.is_valid(instance) else 0.0


# compare_systems reports McNemar's test of a binary metric under the metric's name plus this suffix.
MCNEMAR_SUFFIX = "_mcnemar"


def compile_regex_checks(checks: Mapping[str, str]) -> dict[str, re.Pattern]:
    """Compile user-defined checks {name: pattern} (Python ``re`` syntax).

    Raises:
        ValueError: an empty name, a name ending in MCNEMAR_SUFFIX (the key of another check's McNemar
            test in comparisons), or a pattern that does not compile (the message names the check).
    """
    compiled = {}
    for name, pattern in checks.items():
        if not name:
            raise ValueError("regex check with an empty name")
        if name.endswith(MCNEMAR_SUFFIX):
            raise ValueError(f"regex check {name!r}: names ending in {MCNEMAR_SUFFIX} are taken by comparisons "
                             "(McNemar's test of a check); rename it")
        try:
            compiled[name] = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ValueError(f"regex check {name!r}: pattern {pattern!r} does not compile: {exc}") from exc
    return compiled


def regex_check(prediction: str, pattern: re.Pattern) -> float:
    """100 if ``pattern.search(prediction)`` finds a match, else 0; a blank prediction scores 0."""
    return 0.0 if _is_empty(prediction) else (100.0 if pattern.search(prediction) else 0.0)


@dataclass(frozen=True)
class MetricSpec:
    """One automatic metric as reports, comparisons and verdicts need it.

    name: the key in metrics, per-example scores and comparisons ("bleu", "regex:has_price").
    label: how people read it ("BLEU").
    higher_is_better: the direction of "better" (every 0-100 score here is higher-is-better).
    aggregation: "corpus" (recomputed from summed sufficient statistics: BLEU, chrF) or "mean" (of
        the per-example scores).
    binary: per-example scores are only 0 or 100 (then McNemar's exact test applies).
    """

    name: str
    label: str
    higher_is_better: bool
    aggregation: str
    binary: bool


# Report order: the text-overlap metrics every eval scores, then the dataset's own checks.
METRICS = {spec.name: spec for spec in (
    MetricSpec("exact_match", "exact match", True, "mean", True),
    MetricSpec("bleu", "BLEU", True, "corpus", False),
    MetricSpec("chrf", "chrF", True, "corpus", False),
    MetricSpec("rouge_l", "ROUGE-L", True, "mean", False),
    MetricSpec("json_valid", "JSON validity", True, "mean", True),
    MetricSpec("json_schema_valid", "JSON Schema validity", True, "mean", True),
)}
ALWAYS_SCORED = ("exact_match", "bleu", "chrf", "rouge_l")
REGEX_PREFIX = "regex:"


def metric_spec(name: str) -> MetricSpec:
    """The registry entry of ``name``; a dataset's check "regex:<check>" is a binary mean metric.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name in METRICS:
        return METRICS[name]
    if isinstance(name, str) and name.startswith(REGEX_PREFIX) and len(name) > len(REGEX_PREFIX):
        return MetricSpec(name, f"regex check {name[len(REGEX_PREFIX):]}", True, "mean", True)
    raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)} or regex:<check>")


def scored_metrics(*, json_output: bool = False, output_schema: Mapping | None = None,
                   regex_checks: Mapping[str, str] | None = None, **_language) -> list[str]:
    """Names of the metrics score_corpus and compare_systems produce for these scoring options
    (the keywords of score_corpus; ``language`` changes how, not what), in report order."""
    names = list(ALWAYS_SCORED)
    if json_output or output_schema is not None:
        names.append("json_valid")
    if output_schema is not None:
        names.append("json_schema_valid")
    return names + [f"{REGEX_PREFIX}{name}" for name in (regex_checks or {})]


SHORT_ANSWER_TOKENS = 3
FREE_TEXT_METRIC = "chrf"


def propose_primary_metric(outputs: Sequence[str], output_schema: Mapping | None = None) -> tuple[str, str]:
    """The metric a dataset's verdicts should be decided on, from the shape of its reference outputs.

    The rule, first match wins, over the non-blank outputs:
      1. every output parses as a JSON object or array: structured output, scored on validity:
         json_schema_valid when the dataset has an output schema, else json_valid;
      2. every output is a short answer, at most SHORT_ANSWER_TOKENS tokens (RougeTokenizer: Unicode
         words, each Han/kana/Hangul/Thai... character one token): a label, a number, a name:
         exact_match (as SQuAD scores short answers, Rajpurkar et al. 2016);
      3. otherwise free text: chrF, which needs no word tokenizer (one definition for every
         language) and agrees with human judgments better than BLEU (Popović 2015; Kocmi et al. 2021,
         "To Ship or Not to Ship", WMT; Freitag et al. 2022, WMT metrics task).

    Args:
        outputs: the reference outputs (the final assistant turns of the examples).
        output_schema: the dataset's output JSON Schema, or None.
    Returns:
        (metric name, the reason in words, e.g. "all 30 outputs are short answers (at most 3 tokens)").
    """
    texts = [text for text in outputs if isinstance(text, str) and not _is_empty(text)]
    if not texts:
        return FREE_TEXT_METRIC, "no non-blank outputs to judge the shape by: free text assumed"
    if all(_is_json_structure(text) for text in texts):
        metric = "json_schema_valid" if output_schema is not None else "json_valid"
        return metric, f"all {len(texts)} outputs are JSON objects or arrays (structured output)"
    tokenizer = RougeTokenizer()
    if all(len(tokenizer.tokenize(text)) <= SHORT_ANSWER_TOKENS for text in texts):
        return "exact_match", (f"all {len(texts)} outputs are short answers (at most {SHORT_ANSWER_TOKENS} "
                               "tokens: labels, numbers, names)")
    return FREE_TEXT_METRIC, "the outputs are free text"


def _is_json_structure(text: str) -> bool:
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return False
    return isinstance(value, dict | list)


def _clean_references(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[list[str]]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("nothing to score")
    cleaned = []
    for index, (prediction, refs) in enumerate(zip(predictions, references, strict=True)):
        if not isinstance(prediction, str):
            raise ValueError(f"prediction {index} is {type(prediction).__name__}, not a string")
        if isinstance(refs, str):
            raise ValueError(f"input {index}: references must be a list of strings, got one string")
        refs = [r for r in refs if r is not None]
        if not refs:
            raise ValueError(f"input {index} has no reference")
        non_empty = [r for r in refs if not _is_empty(r)]
        # All references blank: keep one "" so sacrebleu still counts the prediction (no matches).
        cleaned.append(non_empty or [""])
    return cleaned


def _reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    # sacrebleu wants one stream per reference position; inputs with fewer references
    # are padded with None, which sacrebleu skips (variable-reference support).
    width = max(len(refs) for refs in references)
    return [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]


@dataclass
class CorpusStatistics:
    """Per-example sufficient statistics of a sacrebleu corpus metric.

    ``stats`` has shape (n, k) (BLEU: hypothesis length, closest reference length, then matched
    and total n-gram counts for n = 1..4; chrF: hypothesis, reference and matched counts per
    n-gram order); ``corpus_fn(rows)`` is the corpus score (0-100) of any subset or resample of
    rows, as sacrebleu computes it from summed statistics; ``signature`` is sacrebleu's.
    """

    metric: str
    stats: np.ndarray
    corpus_fn: Callable[[np.ndarray], float]
    signature: str


def corpus_statistics(predictions: Sequence[str], references: Sequence[Sequence[str]], metric: str = "bleu",
                      language: str = "en") -> CorpusStatistics:
    """Sufficient statistics for corpus BLEU or chrF, for bootstraps and paired tests.

    Corpus BLEU and chrF are functions of statistics summed over examples, so a resample's score
    is corpus_fn(stats[indexes]) without re-tokenising: sacrebleu's own bootstrap does the same
    (sacrebleu.significance, via Metric._extract_corpus_statistics and
    _compute_score_from_stats, private in sacrebleu 2.6). 1,000 resamples of 96 examples take
    milliseconds.

    Args:
        predictions: N strings.
        references: N lists of reference strings (blank references are ignored unless all are:
            then the prediction is compared with "", which adds its length and n-grams, unmatched,
            to BLEU's statistics, and nothing to chrF's, as sacrebleu counts no chrF n-grams
            against an empty reference).
        metric: "bleu" or "chrf".
        language: ISO 639-1 code of the outputs; picks the BLEU tokenizer (bleu_tokenizer). chrF
            works on characters and has no tokenizer.
    Raises:
        ValueError: lengths differ, an input has no reference, or an unknown metric.
    """
    cleaned = _clean_references(predictions, references)
    if metric == "bleu":
        scorer = BLEU(tokenize=bleu_tokenizer(language))
    elif metric == "chrf":
        scorer = CHRF()
    else:
        raise ValueError(f"metric must be 'bleu' or 'chrf', got {metric!r}")
    stats = np.array(scorer._extract_corpus_statistics(list(predictions), _reference_streams(cleaned)),
                     dtype=np.int64)
    signature = str(scorer.get_signature())  # after extraction: it records the reference count

    def corpus_fn(rows: np.ndarray) -> float:
        return float(scorer._compute_score_from_stats(rows.sum(axis=0)).score)

    return CorpusStatistics(metric=metric, stats=stats, corpus_fn=corpus_fn, signature=signature)


@dataclass
class CorpusScores:
    """score_corpus's result.

    corpus: {metric: {"score": 0-100, "ci_low", "ci_high"(, "signature")}}, metrics as in the
        module docstring; regex checks as "regex:<name>".
    per_example: one {metric: 0-100} dict per input, same keys as ``corpus``.
    bootstrap: {"resamples", "seed", "level"} used for every interval.
    The attributes exact_match, bleu, chrf, rouge_l, bleu_signature and chrf_signature read
    ``corpus`` for older callers.
    """

    corpus: dict[str, dict]
    per_example: list[dict[str, float]]
    language: str
    bootstrap: dict = field(default_factory=dict)

    @property
    def exact_match(self) -> float:
        return self.corpus["exact_match"]["score"]

    @property
    def bleu(self) -> float:
        return self.corpus["bleu"]["score"]

    @property
    def chrf(self) -> float:
        return self.corpus["chrf"]["score"]

    @property
    def rouge_l(self) -> float:
        return self.corpus["rouge_l"]["score"]

    @property
    def bleu_signature(self) -> str:
        return self.corpus["bleu"]["signature"]

    @property
    def chrf_signature(self) -> str:
        return self.corpus["chrf"]["signature"]


def _interval(result: dict) -> dict:
    return {"score": result["score"], "ci_low": result["ci_low"], "ci_high": result["ci_high"]}


def _per_example_scores(predictions: Sequence[str], cleaned: list[list[str]], *, language: str,
                        json_output: bool, output_schema: Mapping | None,
                        regex_checks: Mapping[str, str] | None) -> list[dict[str, float]]:
    """One {metric: 0-100} dict per input, the metrics of scored_metrics (same options), from
    references already cleaned by _clean_references."""
    validator = json_schema_validator(output_schema) if output_schema is not None else None
    checks = compile_regex_checks(regex_checks or {})
    code = _language_code(language)
    sentence_bleu = BLEU(tokenize=bleu_tokenizer(code), effective_order=True)
    sentence_chrf = CHRF()
    rouge = rouge_scorer_for(code)
    per_example = []
    for prediction, refs in zip(predictions, cleaned, strict=True):
        blank = _is_empty(prediction) or refs == [""]
        scores = {
            "exact_match": exact_match(prediction, refs, code),
            "bleu": 0.0 if blank else sentence_bleu.sentence_score(prediction, refs).score,
            "chrf": 0.0 if blank else sentence_chrf.sentence_score(prediction, refs).score,
            "rouge_l": rouge_l(prediction, refs, code, rouge),
        }
        if json_output or validator is not None:
            scores["json_valid"] = json_valid(prediction)
        if validator is not None:
            scores["json_schema_valid"] = json_schema_valid(prediction, validator)
        for name, pattern in checks.items():
            scores[f"{REGEX_PREFIX}{name}"] = regex_check(prediction, pattern)
        per_example.append(scores)
    return per_example


def per_example_scores(predictions: Sequence[str], references: Sequence[Sequence[str]], *, language: str = "en",
                       json_output: bool = False, output_schema: Mapping | None = None,
                       regex_checks: Mapping[str, str] | None = None) -> list[dict[str, float]]:
    """score_corpus's ``per_example`` alone (no corpus scores, no bootstrap): one {metric: 0-100} dict
    per input, the metrics of scored_metrics for these options. Arguments and ValueError as score_corpus."""
    return _per_example_scores(predictions, _clean_references(predictions, references), language=language,
                               json_output=json_output, output_schema=output_schema, regex_checks=regex_checks)


def score_corpus(predictions: Sequence[str], references: Sequence[Sequence[str]], *, language: str = "en",
                 json_output: bool = False, output_schema: Mapping | None = None,
                 regex_checks: Mapping[str, str] | None = None, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> CorpusScores:
    """Score predictions against their references, per example and per corpus, with 95 % intervals.

    Args:
        predictions: N strings.
        references: N lists of reference strings (any number per input; blank ones are ignored
            unless all of an input's references are blank, and then it scores 0).
        language: ISO 639-1 code of the outputs: BLEU tokenizer (bleu_tokenizer), English
            articles in exact match and stemming in ROUGE-L only for "en".
        json_output: also score json_valid.
        output_schema: a JSON Schema (Draft 2020-12); scores json_valid and json_schema_valid.
        regex_checks: {name: pattern}; scores "regex:<name>" (re.search on the prediction).
        resamples, seed, level: percentile bootstrap over examples (stats.bootstrap_ci), the same
            resampled indexes for every metric; corpus metrics (MetricSpec.aggregation "corpus":
            BLEU, chrF) are recomputed from summed sufficient statistics on each resample, the
            other metrics are means.
    Returns:
        CorpusScores (corpus scores with intervals, per-example scores, all 0-100, the metrics of
        scored_metrics; BLEU and chrF with sacrebleu signatures, ROUGE-L and exact match with a
        description of their settings).
    Raises:
        ValueError: lengths differ, nothing to score, an input has no reference, an invalid
            output schema, or a regex check that does not compile.
    """
    cleaned = _clean_references(predictions, references)
    code = _language_code(language)
    per_example = _per_example_scores(predictions, cleaned, language=code, json_output=json_output,
                                      output_schema=output_schema, regex_checks=regex_checks)
    options = {"resamples": resamples, "seed": seed, "level": level}
    corpus = {}
    for name in per_example[0]:
        if metric_spec(name).aggregation == "corpus":
            statistics = corpus_statistics(predictions, cleaned, name, code)
            corpus[name] = {**_interval(bootstrap_ci(statistics.stats, statistics.corpus_fn, **options)),
                            "signature": statistics.signature}
        else:
            corpus[name] = _interval(bootstrap_ci([scores[name] for scores in per_example], **options))
    corpus["exact_match"]["signature"] = f"norm:nfkc+casefold+nopunct{'+noarticles' if code == 'en' else ''}|refs:any"
    corpus["rouge_l"]["signature"] = (f"rouge-score:{version('rouge-score')}|tok:unicode-words+cjk-thai-chars|"
                                      f"stem:{'porter' if code == 'en' else 'no'}|refs:best")
    return CorpusScores(corpus=corpus, per_example=per_example, language=code, bootstrap=options)


def compare_systems(a_predictions: Sequence[str], b_predictions: Sequence[str],
                    references: Sequence[Sequence[str]], *, language: str = "en", json_output: bool = False,
                    output_schema: Mapping | None = None, regex_checks: Mapping[str, str] | None = None,
                    resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Is system B (e.g. the fine-tuned model) better than system A (the prompted base) on the same inputs?

    Every metric score_corpus computes with the same options, scored the same way (so each
    system's score here equals its score_corpus score): for corpus metrics (BLEU, chrF) a paired
    bootstrap (Koehn 2004; stats.paired_bootstrap) recomputing corpus scores from sufficient
    statistics for both systems on the same resampled indexes; for the others the paired
    bootstrap of the mean; for binary ones (exact match, JSON validity, regex checks) also the
    exact McNemar test (stats.mcnemar) as "<metric>_mcnemar".

    Args:
        a_predictions, b_predictions: N strings each, aligned with ``references``.
        references, language, json_output, output_schema, regex_checks, resamples, seed, level: as
            in score_corpus.
    Returns:
        {metric: paired_bootstrap result ("a", "b", "difference" = b - a, "ci_low", "ci_high",
        "p_value", ...; corpus metrics with sacrebleu's "signature")} for the metrics of
        scored_metrics, plus "<metric>_mcnemar" for each binary one (always "exact_match_mcnemar").
    Raises:
        ValueError: as score_corpus, or the two systems have different numbers of predictions.
    """
    if len(a_predictions) != len(b_predictions):
        raise ValueError(f"system A has {len(a_predictions)} predictions but system B {len(b_predictions)}")
    cleaned = _clean_references(a_predictions, references)
    _clean_references(b_predictions, references)  # B's predictions must be strings too
    code = _language_code(language)
    scoring = {"language": code, "json_output": json_output, "output_schema": output_schema,
               "regex_checks": regex_checks}
    per_system = [_per_example_scores(predictions, cleaned, **scoring) for predictions in (a_predictions,
                                                                                           b_predictions)]
    options = {"resamples": resamples, "seed": seed, "level": level}
    result = {}
    for name in per_system[0][0]:
        spec = metric_spec(name)
        if spec.aggregation == "corpus":
            a = corpus_statistics(a_predictions, cleaned, name, code)
            b = corpus_statistics(b_predictions, cleaned, name, code)
            result[name] = {**paired_bootstrap(a.stats, b.stats, a.corpus_fn, **options), "signature": a.signature}
            continue
        a_scores, b_scores = ([scores[name] for scores in system] for system in per_system)
        result[name] = paired_bootstrap(a_scores, b_scores, **options)
        if spec.binary:
            result[name + MCNEMAR_SUFFIX] = mcnemar(a_scores, b_scores)
    return result


def latency_percentiles(latencies_ms: Sequence[float]) -> dict:
    """Mean, p50, p95 and p99 of per-request latencies in ms (numpy.percentile, linear interpolation).
    The mean prices self-hosted requests (busy time per request); the percentiles describe what users wait.

    Returns:
        {"latency_mean_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"}.
    Raises:
        ValueError: no latencies.
    """
    values = np.asarray(latencies_ms, dtype=float)
    if values.size == 0:
        raise ValueError("no latencies")
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"latency_mean_ms": float(values.mean()), "latency_p50_ms": float(p50), "latency_p95_ms": float(p95),
            "latency_p99_ms": float(p99)}


def token_throughput(output_tokens: Sequence[int], latencies_ms: Sequence[float]) -> dict:
    """Generated tokens per second of request time.

    Returns:
        {"output_tokens_per_s": total tokens / total seconds (requests run one after another),
        "mean_output_tokens": tokens per request}.
    Raises:
        ValueError: lengths differ, no requests, or a total latency of 0.
    """
    if len(output_tokens) != len(latencies_ms):
        raise ValueError(f"{len(output_tokens)} token counts but {len(latencies_ms)} latencies")
    if not output_tokens:
        raise ValueError("no requests")
    seconds = float(np.sum(latencies_ms)) / 1000
    if seconds <= 0:
        raise ValueError("total latency is 0 ms")
    return {"output_tokens_per_s": float(np.sum(output_tokens)) / seconds,
            "mean_output_tokens": float(np.mean(output_tokens))}
