// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title Faucet
/// @notice Holds ETH and sends `rewardPerApprove` wei to freshly approved wallets whose balance
///         is below `balanceThresholdForReward`, so they can pay for gas. One event per wallet;
///         a wallet that cannot be paid is skipped, never reverting the batch.
contract Faucet is Ownable {
    mapping(address => bool) private allowedCallers;
    uint256 public rewardPerApprove;
    uint256 public balanceThresholdForReward;
    bool private locked;

    event FaucetPaid(address indexed wallet, uint256 amount);
    event FaucetSkipped(address indexed wallet, string reason);
    event UpdateCallerStatus(address indexed caller, bool allowed);
    event UpdateRewardAmount(uint256 oldAmount, uint256 newAmount);
    event UpdateBalanceThresholdForReward(uint256 oldThreshold, uint256 newThreshold);
    event Received(address indexed sender, uint256 amount);
    event Released(address indexed receiver, uint256 amount);

    constructor(uint256 rewardPerApprove_, uint256 balanceThresholdForReward_) Ownable(msg.sender) {
        rewardPerApprove = rewardPerApprove_;
        balanceThresholdForReward = balanceThresholdForReward_;
    }

    modifier onlyAllowedCaller() {
        require(isAllowedCaller(msg.sender), "Faucet: caller is not allowed");
        _;
    }

    modifier nonReentrant() {
        require(!locked, "Faucet: reentrant call");
        locked = true;
        _;
        locked = false;
    }

    receive() external payable {
        emit Received(msg.sender, msg.value);
    }

    /// @notice The owner is always allowed; other callers when enabled by the owner.
    function isAllowedCaller(address caller) public view returns (bool) {
        return caller == owner() || allowedCallers[caller];
    }

    function faucet(address[] calldata wallets) external onlyAllowedCaller nonReentrant {
        uint256 reward = rewardPerApprove;
        uint256 threshold = balanceThresholdForReward;
        for (uint256 i = 0; i < wallets.length; i++) {
            address wallet = wallets[i];
            if (wallet == address(0)) {
                emit FaucetSkipped(wallet, "zero address");
            } else if (reward == 0) {
                emit FaucetSkipped(wallet, "reward is zero");
            } else if (wallet.balance >= threshold) {
                emit FaucetSkipped(wallet, "balance not below threshold");
            } else if (address(this).balance < reward) {
                emit FaucetSkipped(wallet, "faucet balance too low");
            } else {
                (bool sent,) = payable(wallet).call{value: reward}("");
                if (sent) {
                    emit FaucetPaid(wallet, reward);
                } else {
                    emit FaucetSkipped(wallet, "transfer failed");
                }
            }
        }
    }

    function updateCallerStatus(address caller, bool allowed) external onlyOwner {
        require(caller != address(0), "Faucet: invalid caller address");
        allowedCallers[caller] = allowed;
        emit UpdateCallerStatus(caller, allowed);
    }

    function updateRewardAmount(uint256 newRewardAmount) external onlyOwner {
        uint256 old = rewardPerApprove;
        rewardPerApprove = newRewardAmount;
        emit UpdateRewardAmount(old, newRewardAmount);
    }

    function updateBalanceThresholdForReward(uint256 newThreshold) external onlyOwner {
        uint256 old = balanceThresholdForReward;
        balanceThresholdForReward = newThreshold;
        emit UpdateBalanceThresholdForReward(old, newThreshold);
    }

    /// @notice Sends the whole ETH balance back to the owner.
    function release() external onlyOwner nonReentrant {
        uint256 amount = address(this).balance;
        (bool sent,) = payable(msg.sender).call{value: amount}("");
        require(sent, "Faucet: release failed");
        emit Released(msg.sender, amount);
    }
}
