from rag.text import Tokenizer, detect_lang


def test_english_lowercase_stopwords_and_stemming():
    assert Tokenizer()("The Models are RUNNING quickly") == ["model", "run", "quick"]


def test_unicode_words_and_numbers():
    assert Tokenizer()("BM25, k1=1.2; naïve café") == ["bm25", "k1", "1", "2", "naïv", "café"]


def test_korean_particles_and_endings_are_dropped():
    tok = Tokenizer()
    assert tok("서울에서") == tok("서울은") == tok("서울이") == ["서울"]
    # verb stems survive, endings go
    assert "먹" in tok("밥을 먹었다")


def test_mixed_korean_english_keeps_latin_terms_once():
    tokens = Tokenizer()("GPT-4는 서울에서 retrieval을 했다")
    assert tokens.count("gpt") == 1 and "retriev" in tokens and "서울" in tokens and "4" in tokens


def test_whitespace_korean_baseline_keeps_eojeol():
    assert Tokenizer(korean="none")("서울에서 만났다") == ["서울에서", "만났다"]


def test_options_and_config_roundtrip():
    tok = Tokenizer(stem=False, stopwords=False, korean="none")
    assert tok("The models") == ["the", "models"]
    again = Tokenizer.from_config(tok.config())
    assert again.config() == tok.config()
    assert Tokenizer.from_config(Tokenizer().config())("running") == ["run"]


def test_batch_equals_single():
    tok = Tokenizer()
    texts = ["Dense retrieval with FAISS", "한국어 형태소 분석기는 조사를 제거한다", ""]
    assert tok.tokenize_many(texts) == [tok(t) for t in texts]


def test_detect_lang():
    assert detect_lang("서울은 대한민국의 수도이다") == "ko"
    assert detect_lang("Seoul is the capital") == "en"
    assert detect_lang("1234 ---") == "en"
