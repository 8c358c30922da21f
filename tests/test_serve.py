"""The service through real HTTP on loopback (Ray Serve, a real exported model), and its page in
a real headless browser (Debian's chromium)."""

import base64
import concurrent.futures
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from PIL import Image

from fashion_tune import data, images
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory, fashion_dir):
    """A small model trained for real on 3,000 images, evaluated and exported."""
    from fashion_tune.cli import main

    results = tmp_path_factory.mktemp("results")
    (results / "s").mkdir()
    params = {"conv_blocks": 1, "filters": 8, "dense_units": 32, "batch_size": 64, "epochs": 2, "learning_rate": 3e-3}
    (results / "s" / "best_config.json").write_text(json.dumps({"study": "s", "params": params}))
    for argv in (["retrain", "--study", "s", "--subset", "3000"], ["evaluate", "--study", "s", "--robustness-images",
                                                                   "0"]):
        assert main([*argv, "--results-dir", str(results), "--data-dir", str(fashion_dir)]) == 0
    assert main(["export", "--study", "s", "--results-dir", str(results), "--out", str(results / "export")]) == 0
    return results / "export"


@pytest.fixture(scope="module")
def service(exported):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "fashion_tune", "serve", "--model", str(exported), "--port",
                                str(port), "--max-mb", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=2).ok:
                break
        except requests.RequestException:  # not listening yet, or the replica not ready yet
            pass
        time.sleep(1)
    else:
        process.kill()
        pytest.fail("the service did not come up: " + process.stdout.read().decode()[-3000:])
    yield url
    process.terminate()  # SIGTERM, as a service manager stops it: as quiet as Ctrl-C
    try:
        output = process.communicate(timeout=60)[0].decode()
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the service did not stop on SIGTERM within 60 s")
    assert process.returncode == 130 and output.rstrip().endswith("fashion-tune: interrupted"), output[-3000:]
    assert "Stack trace" not in output and "SIGTERM" not in output, output[-3000:]
    assert "\x1b[" not in output and "raylet" not in output, output[-3000:]  # no Ray lines, no raw colour codes


@pytest.fixture(scope="module")
def photos(tmp_path_factory, fashion_dir):
    """A photo-like JPEG (dark on white, colour), a Fashion-MNIST PNG, with their true classes."""
    dataset = data.load(str(fashion_dir))
    folder = tmp_path_factory.mktemp("photos")
    rgb = np.stack([255 - dataset.test_images[0]] * 3, -1)
    Image.fromarray(rgb).resize((300, 300)).save(folder / "photo.jpg")
    Image.fromarray(dataset.test_images[1]).save(folder / "plain.png")
    return folder


def encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def model_input_of(answer: dict) -> np.ndarray:
    """The pixels of a result's "model_input" data URL."""
    head, data_ = answer["model_input"].split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_))))


def check_classification(answer: dict):
    assert answer["category"] in data.CLASS_NAMES
    assert set(answer["probabilities"]) == set(data.CLASS_NAMES)
    assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert answer["probability"] == max(answer["probabilities"].values())
    assert isinstance(answer["unsure"], bool) and 0 < answer["unsure_below"] < 1


def test_classify_multipart_and_raw_bytes(service, photos):
    jpeg = (photos / "photo.jpg").read_bytes()
    multipart = requests.post(f"{service}/v1/classify", files={"file": ("photo.jpg", jpeg, "image/jpeg")})
    raw = requests.post(f"{service}/v1/classify", data=jpeg, headers={"Content-Type": "image/jpeg"})
    assert multipart.status_code == raw.status_code == 200
    check_classification(multipart.json())
    assert multipart.json()["probabilities"] == pytest.approx(raw.json()["probabilities"])


def test_same_preprocessing_and_answer_as_predict(service, photos, exported):
    from fashion_tune import predict
    from fashion_tune.layout import ExportDir

    expected = predict.classify([photos / "plain.png"], ExportDir(exported))[0].answer["probabilities"]
    answer = requests.post(f"{service}/v1/classify", files={"file": ("plain.png", (photos / "plain.png").read_bytes())})
    assert answer.json()["probabilities"] == pytest.approx(expected, abs=1e-5)


def test_batch_keeps_going_past_a_bad_file(service, photos):
    files = [("files", ("photo.jpg", (photos / "photo.jpg").read_bytes(), "image/jpeg")),
             ("files", ("broken.jpg", b"\xff\xd8\xff\xe0 not really", "image/jpeg")),
             ("files", ("plain.png", (photos / "plain.png").read_bytes(), "image/png"))]
    answer = requests.post(f"{service}/v1/classify/batch", files=files)
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["file"] for r in results] == ["photo.jpg", "broken.jpg", "plain.png"]
    check_classification(results[0])
    check_classification(results[2])
    assert results[1]["status"] == 400 and "broken.jpg" in results[1]["error"]


def test_the_size_limit_is_the_request_s_with_all_its_files(service):
    """Three 0.9 MB files under --max-mb 1: once each was judged on its own, so one request could carry
    32 times the limit into a replica (issue 34); a request under the limit is still read."""
    files = [("files", (f"f{i}.png", b"\0" * 900_000, "image/png")) for i in range(3)]
    answer = requests.post(f"{service}/v1/classify/batch", files=files)
    assert answer.status_code == 413 and "the request: " in answer.json()["error"]
    files = [("files", (f"f{i}.png", b"\0" * 300_000, "image/png")) for i in range(3)]
    answer = requests.post(f"{service}/v1/classify/batch", files=files)
    assert answer.status_code == 200 and [r["status"] for r in answer.json()["results"]] == [400, 400, 400]


def bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(buffer, format="PNG")  # 50 Mpx in a few KB
    return buffer.getvalue()


def huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (20_000, 10_000)).save(buffer, format="PNG")  # 200 Mpx: Pillow refuses it on opening
    return buffer.getvalue()


@pytest.mark.parametrize("case, send, status, message", [
    ("empty body", dict(data=b"", headers={"Content-Type": "image/png"}), 400, "empty file"),
    ("not an image", dict(files={"file": ("notes.txt", b"hello", "text/plain")}), 400, "not an image"),
    ("wrong content type", dict(data=b"hello", headers={"Content-Type": "text/plain"}), 415, "is not accepted"),
    ("over the size limit", dict(data=b"\0" * 1_200_000, headers={"Content-Type": "image/png"}), 413, "over the limit"),
    ("over the limit, multipart", dict(files={"file": ("big.png", b"\0" * 1_200_000)}), 413, "over the limit"),
    ("just under the limit, multipart", dict(files={"file": ("big.png", b"\0" * 1_000_000)}), 400, "not an image"),
    ("decompression bomb", dict(data=bomb_png(), headers={"Content-Type": "image/png"}), 400,
     "over the limit of 40,000,000"),
    ("a bomb past Pillow's own guard", dict(data=huge_png(), headers={"Content-Type": "image/png"}), 400,
     "more pixels than the limit of 40,000,000"),
    ("no file field", dict(files={"other": ("x.png", b"x")}), 400, "field named 'file'"),
])
def test_bad_input_gets_a_clear_4xx_and_the_service_keeps_serving(service, case, send, status, message):
    answer = requests.post(f"{service}/v1/classify", **send)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert requests.get(f"{service}/healthz").json()["status"] == "ok"


def test_every_error_has_the_one_documented_shape(service, photos):
    """FastAPI's own answers too: a wrong method, an unknown path, a form with too many files."""
    for answer, status, message in (
        (requests.get(f"{service}/v1/classify"), 405, "GET /v1/classify: method not allowed; the service answers"),
        (requests.get(f"{service}/v2/classify"), 404, "GET /v2/classify: no such endpoint"),
        (requests.post(f"{service}/v1/classify/batch",
                       files=[("files", (f"{i}.png", (photos / "plain.png").read_bytes())) for i in range(33)]),
         400, "more than 32 files in one request"),
    ):
        assert answer.status_code == status and set(answer.json()) == {"error"}, answer.text
        assert message in answer.json()["error"]


def test_a_chunked_upload_is_refused_at_the_limit_not_read_whole(service):
    """No Content-Length (chunked transfer): the service answers 413 once the form passes its limit
    (--max-mb 1 here: 1 MiB and 64 KiB of form overhead), while the client is still sending, rather
    than after reading (and holding) all of it."""
    import select
    from urllib.parse import urlsplit

    host, port = urlsplit(service).hostname, urlsplit(service).port
    sent, offered, answer = 0, 20 * 2**20, b""
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
        conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        chunk = b"\0" * 65536
        while sent < offered:
            if select.select([conn], [], [], 0.05)[0]:  # the service has answered
                break
            try:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:  # it answered and closed while we sent
                break
            sent += len(chunk)
        conn.settimeout(30)
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            more = conn.recv(65536)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"error"' in answer and b"over the limit" in answer
    assert sent < offered / 2, f"the client sent {sent:,} of {offered:,} bytes before the answer"
    assert requests.get(f"{service}/healthz").json()["status"] == "ok"


@pytest.mark.parametrize("blank", [encoded(Image.new("RGB", (300, 300), "white"), "PNG"),
                                   encoded(Image.new("RGB", (300, 300), (128, 128, 128)), "JPEG")],
                         ids=["white PNG", "uniform grey JPEG"])
def test_no_garment_found_is_a_422_and_the_service_keeps_serving(service, photos, blank):
    answer = requests.post(f"{service}/v1/classify", files={"file": ("blank", blank)})
    assert answer.status_code == 422, answer.text
    assert list(answer.json()) == ["error"] and "blank" in answer.json()["error"]
    files = [("files", ("photo.jpg", (photos / "photo.jpg").read_bytes())), ("files", ("blank", blank))]
    results = requests.post(f"{service}/v1/classify/batch", files=files).json()["results"]
    check_classification(results[0])
    assert results[1]["status"] == 422 and "category" not in results[1]


def test_include_input_returns_the_28x28_image_the_model_saw(service, photos):
    jpeg = (photos / "photo.jpg").read_bytes()
    answer = requests.post(f"{service}/v1/classify?include_input=true", files={"file": ("photo.jpg", jpeg)}).json()
    seen = model_input_of(answer)
    assert seen.shape == (28, 28) and seen.dtype == np.uint8
    assert np.abs(seen - 255 * images.to_model_input_from_bytes(jpeg, "photo.jpg")[..., 0]).max() <= 0.5 + 1e-4
    assert "model_input" not in requests.post(f"{service}/v1/classify", files={"file": ("photo.jpg", jpeg)}).json()
    batch = requests.post(f"{service}/v1/classify/batch?include_input=1", files=[("files", ("photo.jpg", jpeg))]).json()
    assert np.array_equal(model_input_of(batch["results"][0]), seen)


@pytest.mark.parametrize("endpoint", ["classify", "classify/batch"])
def test_an_invalid_include_input_is_a_400(service, photos, endpoint):
    answer = requests.post(f"{service}/v1/{endpoint}?include_input=maybe",
                           files={"file": ("photo.jpg", (photos / "photo.jpg").read_bytes())})
    assert answer.status_code == 400
    assert answer.json() == {"error": "include_input is 'maybe', must be true or false (or 1 or 0)"}


def test_concurrent_requests_each_get_their_own_answer(service, photos):
    # Two different images interleaved: requests batched together must each get their own result.
    uploads = {name: (photos / name).read_bytes() for name in ("photo.jpg", "plain.png")}
    alone = {name: requests.post(f"{service}/v1/classify?include_input=true", files={"file": (name, raw)}).json()
             for name, raw in uploads.items()}

    def one(i):
        name = list(uploads)[i % 2]
        answer = requests.post(f"{service}/v1/classify?include_input=true", data=uploads[name],
                               headers={"Content-Type": "application/octet-stream"}, timeout=60)
        return name, answer

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(32)))
    assert all(a.status_code == 200 for _, a in answers)
    for name, answer in answers:
        assert answer.json()["probabilities"] == pytest.approx(alone[name]["probabilities"], abs=1e-5)
        assert answer.json()["model_input"] == alone[name]["model_input"]


def test_model_card_and_health(service):
    card = requests.get(f"{service}/v1/model").json()
    assert card["classes"] == list(data.CLASS_NAMES) and card["study"] == "s"
    assert requests.get(f"{service}/healthz").json() == {"status": "ok", "model": card["name"]}


def chromium_or_skip():
    """Debian's chromium and chromedriver: installed here if missing (as root, as CI runs), else skip."""
    installed = shutil.which("chromium") and shutil.which("chromedriver")
    if not installed and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], env=env, capture_output=True)
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


def test_the_page_classifies_an_uploaded_photo_in_a_real_browser(service, photos):
    chromium_or_skip()
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options,
                               service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
    try:
        browser.get(f"{service}/")
        assert "What is this product?" in browser.page_source
        browser.find_element(By.ID, "files").send_keys(str(photos / "photo.jpg"))
        category = WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".result .category"))
        expected = requests.post(f"{service}/v1/classify", files={"file": ("photo.jpg",
                                                                           (photos / "photo.jpg").read_bytes())}).json()
        assert category[0].text == f"{expected['category']} {100 * expected['probability']:.1f}%"
        assert len(browser.find_elements(By.CSS_SELECTOR, ".result .bar")) == 10
        assert browser.find_element(By.CSS_SELECTOR, ".result img").get_attribute("alt") == "photo.jpg"
        # beside the photo, the 28x28 model input, scaled up with square pixels and captioned
        seen = browser.find_element(By.CSS_SELECTOR, ".result img.model-input")
        WebDriverWait(browser, 10).until(lambda b: b.execute_script("return arguments[0].complete", seen))
        assert seen.get_attribute("src").startswith("data:image/png;base64,")
        natural_size = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", seen)
        assert natural_size == [28, 28]
        assert seen.size["width"] > 28 and seen.value_of_css_property("image-rendering") == "pixelated"
        assert "what the model saw" in seen.find_element(By.XPATH, "..").text
        # Every bar track starts and is as wide in every row: nothing shifts with the numbers.
        tracks = browser.find_elements(By.CSS_SELECTOR, ".result .bar .track")
        assert len({(t.location["x"], t.size["width"]) for t in tracks}) == 1
        card = requests.get(f"{service}/v1/model").json()
        shown = browser.find_element(By.ID, "model").text
        assert shown.startswith(f"Model: {card['name']}") and card["created"][:10] in shown

        # Several files: listed in the order chosen, newest upload on top; a file that is not an
        # image gets its error and a "no preview" note, not a broken-image icon.
        (photos / "notes.png").write_bytes(b"not an image at all")
        chosen = [photos / "plain.png", photos / "notes.png", photos / "photo.jpg"]
        browser.find_element(By.ID, "files").send_keys("\n".join(map(str, chosen)))
        WebDriverWait(browser, 60).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".result")) == 4)
        rows = browser.find_elements(By.CSS_SELECTOR, ".result")
        assert [r.find_element(By.CSS_SELECTOR, ".text > div").text for r in rows[:3]] == [p.name for p in chosen]
        assert "not an image" in rows[1].find_element(By.CSS_SELECTOR, ".error").text
        WebDriverWait(browser, 10).until(lambda b: rows[1].find_elements(By.CSS_SELECTOR, ".no-preview"))
        assert not rows[1].find_elements(By.CSS_SELECTOR, "img")
    finally:
        browser.quit()
