"""Where a small-batch step's time goes on the GPU: kernel-launch latency, eager vs CUDA-graph step."""

import time

import torch
import torch.nn.functional as F

from jackpot.models import build_model


def timed(fn, n):
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


x = torch.zeros(16, device="cuda")
print(f"launch latency (tiny add): {timed(lambda: x.add_(1), 2000) * 1e6:.1f} us/kernel")
for name in ("resnet32", "vgg19"):
    model = build_model(name, 10).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, fused=True)
    data = torch.randn(64, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 10, (64,), device="cuda")

    def step(net=model):
        with torch.autocast("cuda", torch.bfloat16):
            loss = F.cross_entropy(net(data), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(20):
        step()
    eager = timed(step, 100)
    compiled = torch.compile(model)
    for _ in range(5):
        step(compiled)
    comp = timed(lambda: step(compiled), 100)
    # CUDA graph of the whole step (forward, backward, optimizer)
    static_opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            static_opt.zero_grad(set_to_none=False)
            with torch.autocast("cuda", torch.bfloat16):
                F.cross_entropy(model(data), target).backward()
            static_opt.step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    static_opt.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        with torch.autocast("cuda", torch.bfloat16):
            F.cross_entropy(model(data), target).backward()
        static_opt.step()
    graphed = timed(graph.replay, 200)
    for label, t in (("eager", eager), ("compiled", comp), ("cuda graph", graphed)):
        print(f"{name} bs64 bf16 {label:10s} {t * 1e3:7.3f} ms/step  {64 / t:9.0f} img/s")
