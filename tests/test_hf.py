"""Hugging Face transformers models as a user meets them: BERT, GPT-2 (Conv1D layers, a tied
head) and Llama, built from tiny configs (nothing is downloaded), pruned, sparsified with a
tokenizer-style dict of inputs, trained a step, saved with save_pretrained and loaded back."""

import copy
import json
import warnings

import pytest
import torch

import sparsetrain as st

tf = pytest.importorskip("transformers")  # the hf extra; CI installs it (scripts/run_tests.sh)
Conv1D = tf.pytorch_utils.Conv1D

VOCAB = 96


def bert():
    config = tf.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=3,
    )
    return tf.BertForSequenceClassification(config)


def gpt2(**kw):
    config = tf.GPT2Config(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=32,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        **kw,
    )
    return tf.GPT2LMHeadModel(config)


def llama():
    config = tf.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return tf.LlamaForCausalLM(config)


BUILD = {"bert": bert, "gpt2": gpt2, "llama": llama}


def tokens(name, batch=2, length=7, seed=0):
    """What a tokenizer returns (a BatchEncoding: a mapping of keyword arguments)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0  # padding in the first row
    data = {"input_ids": ids, "attention_mask": mask}
    if name == "bert":
        data["token_type_ids"] = torch.zeros_like(ids)
    return tf.BatchEncoding(data)


def labels(name, inputs):
    if name == "bert":
        return torch.tensor([0, 2])
    return inputs["input_ids"]


def sparse_model(name):
    torch.manual_seed(0)
    model = BUILD[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GPT-2's tied head: left unpruned, warned
        st.magnitude_prune(model, 0.9, scope="layer")
    dense = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ... and left dense, warned
        report = st.sparsify(model, example_inputs=tokens(name), only_if_faster=False)
    return model, dense, report


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama"])
def test_sparsify_trains_a_step_like_the_dense_model(name):
    model, dense, report = sparse_model(name)
    layers = [m for m in model.modules() if isinstance(m, st.SparseLinear)]
    expected = {"bert": 14, "gpt2": 8, "llama": 15}[name]  # llama: 7 per layer + lm_head
    assert len(report.swapped) == len(layers) == expected
    inputs = tokens(name)
    model.train()
    dense.train()
    loss = model(**inputs, labels=labels(name, inputs)).loss
    dense_loss = dense(**inputs, labels=labels(name, inputs)).loss
    torch.testing.assert_close(loss, dense_loss, rtol=1e-5, atol=1e-5)
    loss.backward()
    dense_loss.backward()
    for layer_name in report.swapped:
        sparse, twin = model.get_submodule(layer_name), dense.get_submodule(layer_name)
        w, g = twin.weight.detach(), twin.weight.grad
        if isinstance(twin, Conv1D):  # (in, out): the sparse layer holds W^T
            w, g = w.t(), g.t()
        torch.testing.assert_close(sparse.values.grad, g[w != 0], rtol=1e-4, atol=1e-5)
    sparse_params = {id(m.values) for m in layers}
    dense_grads = dict(dense.named_parameters())
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        if id(p) not in sparse_params and pname in dense_grads:  # biases, norms, embeddings
            torch.testing.assert_close(p.grad, dense_grads[pname].grad, rtol=1e-4, atol=1e-5)
    nnz = [m.nnz for m in layers]
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [m.nnz for m in layers] == nnz  # the pattern holds
    assert torch.isfinite(model(**inputs).logits).all()


def test_gpt2_conv1d_layers_swap_and_the_tied_head_stays_whole():
    torch.manual_seed(0)
    model = gpt2()
    wte = model.transformer.wte.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"lm_head shares its weight with transformer\.wte"):
        st.magnitude_prune(model, 0.9, scope="layer")
    assert torch.equal(model.transformer.wte.weight, wte)  # pruning the head would zero it
    with pytest.warns(UserWarning, match="lm_head shares its weight"):
        report = st.sparsify(model, example_inputs=tokens("gpt2"), only_if_faster=False)
    rows = {r.name: r for r in report.layers}
    assert rows["transformer.h.0.attn.c_attn"].type == "Conv1D"
    assert rows["transformer.h.0.attn.c_attn"].swapped
    assert rows["lm_head"].reason == "tied: weight shared with transformer.wte.weight"
    assert rows["transformer.wte"].reason == "type not supported (Embedding)"
    assert model.lm_head.weight is model.transformer.wte.weight
    assert isinstance(model.transformer.h[1].mlp.c_proj, st.SparseLinear)


def test_bert_report_rows_have_whole_names():
    _, _, report = sparse_model("bert")
    text = str(report)
    for part in ("query", "key", "value"):
        assert f"bert.encoder.layer.1.attention.self.{part} " in text


def test_dict_example_inputs_time_every_layer():
    torch.manual_seed(0)
    model = bert()
    st.magnitude_prune(model, 0.9, scope="layer")
    inputs = tokens("bert")
    before = logits(model, inputs)
    report = st.sparsify(model, example_inputs=inputs)  # model(**inputs), timed per layer
    timed = [r for r in report.layers if r.type == "Linear"]
    assert len(timed) == 14
    assert all(r.dense_ms is not None and r.sparse_ms is not None for r in timed)
    torch.testing.assert_close(logits(model, inputs), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama"])
def test_save_pretrained_round_trip(name, tmp_path):
    model, dense, _ = sparse_model(name)
    inputs = tokens(name)
    expected = logits(model, inputs)
    model.save_pretrained(tmp_path)
    cls = type(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left over to warn about
        loaded = st.from_pretrained(cls, tmp_path)
    assert type(loaded) is cls
    kinds = {n: type(m) for n, m in loaded.named_modules()}
    assert kinds == {n: type(m) for n, m in model.named_modules()}
    torch.testing.assert_close(logits(loaded, inputs), expected, rtol=0, atol=0)
    # densify: the original layer types, weights laid out as they were.
    st.densify(loaded)
    assert {n: type(m) for n, m in loaded.named_modules()} == {
        n: type(m) for n, m in dense.named_modules()
    }
    for pname, p in dense.named_parameters():
        torch.testing.assert_close(loaded.get_parameter(pname), p, rtol=0, atol=0)
    torch.testing.assert_close(logits(loaded, inputs), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_a_plain_load_of_a_sparse_checkpoint_raises_naming_the_call(name, tmp_path):
    model, _, _ = sparse_model(name)
    model.save_pretrained(tmp_path)
    cls = type(model)
    with pytest.raises(st.hf.SparseCheckpointError) as caught:
        cls.from_pretrained(tmp_path)
    message = str(caught.value)
    assert f"sparsetrain.from_pretrained({cls.__name__}, '{tmp_path}')" in message
    layer = "bert.encoder.layer" if name == "bert" else "transformer.h"
    assert layer in message
    with pytest.raises(st.hf.SparseCheckpointError):  # through an Auto class too
        tf.AutoModel.from_pretrained(tmp_path)


def test_a_plain_load_of_a_dense_checkpoint_is_left_alone(tmp_path):
    """A dense checkpoint loaded into another head: transformers' own report (unexpected and
    missing keys), no sparsetrain error; sparsetrain.from_pretrained loads it the same."""
    torch.manual_seed(0)
    model = bert()
    model.save_pretrained(tmp_path)
    loaded = tf.BertModel.from_pretrained(tmp_path)
    assert not any(isinstance(m, st.SparseLinear) for m in loaded.modules())
    again = st.from_pretrained(tf.BertForSequenceClassification, tmp_path)
    inputs = tokens("bert")
    torch.testing.assert_close(logits(again, inputs), logits(model, inputs), rtol=0, atol=0)


def test_from_pretrained_reads_sharded_checkpoints(tmp_path):
    model, _, _ = sparse_model("llama")
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    loaded, info = st.from_pretrained(tf.LlamaForCausalLM, tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    inputs = tokens("llama")
    torch.testing.assert_close(logits(loaded, inputs), logits(model, inputs), rtol=0, atol=0)


def test_a_base_model_checkpoint_loads_into_a_model_with_a_head(tmp_path):
    model, _, _ = sparse_model("bert")
    model.bert.save_pretrained(tmp_path)  # keys without the "bert." prefix
    with pytest.warns(UserWarning, match=r"classifier\.weight \(newly initialized\)"):
        loaded = st.from_pretrained(tf.BertForSequenceClassification, tmp_path)
    query = loaded.bert.encoder.layer[0].attention.self.query
    assert isinstance(query, st.SparseLinear)
    assert torch.equal(query.values, model.bert.encoder.layer[0].attention.self.query.values)
    assert type(loaded.classifier) is torch.nn.Linear


def test_a_sparse_head_does_not_load_into_a_tied_one(tmp_path):
    torch.manual_seed(0)
    model = gpt2(tie_word_embeddings=False)
    st.magnitude_prune(model, 0.9, scope="layer")
    st.sparsify(model, only_if_faster=False)
    assert isinstance(model.lm_head, st.SparseLinear)  # untied: it may be sparse
    model.save_pretrained(tmp_path)
    loaded = st.from_pretrained(tf.GPT2LMHeadModel, tmp_path)
    assert isinstance(loaded.lm_head, st.SparseLinear)
    with pytest.raises(ValueError, match="ties its weight to transformer.wte.weight"):
        st.from_pretrained(tf.GPT2LMHeadModel, tmp_path, tie_word_embeddings=True)


def test_from_pretrained_follows_subfolder_and_variant(tmp_path):
    model, _, _ = sparse_model("gpt2")
    model.save_pretrained(tmp_path / "sub", variant="v1")
    assert (tmp_path / "sub" / "model.v1.safetensors").is_file()
    loaded = st.from_pretrained(tf.GPT2LMHeadModel, tmp_path, subfolder="sub", variant="v1")
    assert isinstance(loaded.transformer.h[0].attn.c_attn, st.SparseLinear)
    inputs = tokens("gpt2")
    torch.testing.assert_close(logits(loaded, inputs), logits(model, inputs), rtol=0, atol=0)
