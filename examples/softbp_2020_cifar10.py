"""The 2020 SpikingFlow CIFAR-10 pipeline example, written the 2020 way, on small random data.

Only the imports differ from a 2020 script (`SpikingFlow` -> `softspike`): a `softbp.ModelPipeline`
subclass appends `nn.Sequential` blocks with single-step `softbp.LIFNode`s, one per device; training
either calls `net(in_spikes, split_sizes)` T times on Poisson spikes (micro-batches flow through the
stages) or `net.constant_forward(img, T)` (the stages work on consecutive time steps at once).

    python examples/softbp_2020_cifar10.py --devices cpu,cpu,cpu --steps 3
    python examples/softbp_2020_cifar10.py --devices 0,1,2 --width 256 --T 50   # three GPUs, 2020 size
"""

import argparse
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import softspike.encoding as encoding
import softspike.softbp as softbp


class Net(softbp.ModelPipeline):
    def __init__(self, gpu_list, width=256, tau=100.0, v_threshold=1.0, v_reset=0.0):
        super().__init__()
        # conv-conv-maxpool stacks, then a linear layer: the 2020 network, split in three
        self.append(
            nn.Sequential(
                nn.Conv2d(3, width, kernel_size=3, padding=1),
                nn.BatchNorm2d(width),
                softbp.LIFNode(tau=tau, v_threshold=v_threshold, v_reset=v_reset),
            ),
            gpu_list[0],
        )
        self.append(
            nn.Sequential(
                nn.Conv2d(width, width, kernel_size=3, padding=1),
                nn.MaxPool2d(2, 2),
                nn.BatchNorm2d(width),
                softbp.LIFNode(tau=tau, v_threshold=v_threshold, v_reset=v_reset),  # 16 * 16
            ),
            gpu_list[1],
        )
        self.append(
            nn.Sequential(
                nn.Conv2d(width, width, kernel_size=3, padding=1),
                nn.MaxPool2d(4, 4),
                nn.BatchNorm2d(width),
                softbp.LIFNode(tau=tau, v_threshold=v_threshold, v_reset=v_reset),  # 4 * 4
                nn.Flatten(),
                nn.Linear(width * 4 * 4, 10, bias=False),
                softbp.LIFNode(tau=tau, v_threshold=v_threshold, v_reset=v_reset),
            ),
            gpu_list[2],
        )

    def reset_(self):
        for item in self.modules():
            if hasattr(item, "reset"):
                item.reset()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="cpu,cpu,cpu", help="three devices, e.g. 0,1,2 or cpu,cpu,cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--split-sizes", type=int, default=4)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--tau", type=float, default=2.0)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--constant-forward", action="store_true", help="the 2020 cifar10cmp variant")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    gpu_list = args.devices.split(",")
    net = Net(gpu_list=gpu_list, width=args.width, tau=args.tau)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    encoder = encoding.PoissonEncoder()
    img = torch.rand(args.batch_size, 3, 32, 32)  # stand-in for a CIFAR-10 batch
    label = torch.randint(0, 10, (args.batch_size,)).to(net.gpu_list[-1])

    losses = []
    net.train()
    for train_times in range(args.steps):
        optimizer.zero_grad()
        if args.constant_forward:
            out_spikes_counter = net.constant_forward(img, args.T, True)
        else:
            for t in range(args.T):
                in_spikes = encoder(img).float()
                if t == 0:
                    out_spikes_counter = net(in_spikes, args.split_sizes)
                else:
                    out_spikes_counter += net(in_spikes, args.split_sizes)
        out_spikes_counter_frequency = out_spikes_counter / args.T
        loss = F.cross_entropy(out_spikes_counter_frequency, label)
        loss.backward()
        optimizer.step()
        net.reset_()
        correct_rate = (out_spikes_counter_frequency.max(1)[1] == label).float().mean().item()
        losses.append(loss.item())
        print("train_times", train_times, "loss", round(loss.item(), 4), "train_correct_rate", correct_rate)
    return losses


if __name__ == "__main__":
    main(sys.argv[1:])
