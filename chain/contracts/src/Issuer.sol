// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title IIssuer
/// @notice The part of the issuer that campaigns and services rely on: the wallet whitelist.
interface IIssuer {
    function isWalletApproved(address wallet) external view returns (bool);
    function approveWallet(address wallet) external;
    function suspendWallet(address wallet) external;
    function walletApprover() external view returns (address);
}

/// @title Issuer
/// @notice Keeps the whitelist of wallets that passed KYC on the platform.
/// @dev Wallets are approved or suspended by the wallet approver (or the owner). The owner
///      (the deployer) chooses the wallet approver, usually a WalletApprover contract.
contract Issuer is IIssuer, Ownable {
    address public override walletApprover;
    mapping(address => bool) private approvedWallets;

    event WalletApproved(address indexed wallet);
    event WalletSuspended(address indexed wallet);
    event WalletApproverChanged(address indexed previousApprover, address indexed newApprover);

    /// @param initialWalletApprover the first wallet approver; address(0) means the deployer
    constructor(address initialWalletApprover) Ownable(msg.sender) {
        walletApprover = initialWalletApprover == address(0) ? msg.sender : initialWalletApprover;
        emit WalletApproverChanged(address(0), walletApprover);
    }

    modifier onlyWalletApprover() {
        require(
            msg.sender == walletApprover || msg.sender == owner(), "Issuer: caller is not the wallet approver"
        );
        _;
    }

    function isWalletApproved(address wallet) external view override returns (bool) {
        return approvedWallets[wallet];
    }

    function approveWallet(address wallet) external override onlyWalletApprover {
        require(wallet != address(0), "Issuer: invalid wallet address");
        approvedWallets[wallet] = true;
        emit WalletApproved(wallet);
    }

    function suspendWallet(address wallet) external override onlyWalletApprover {
        require(wallet != address(0), "Issuer: invalid wallet address");
        approvedWallets[wallet] = false;
        emit WalletSuspended(wallet);
    }

    function changeWalletApprover(address newWalletApprover) external onlyOwner {
        require(newWalletApprover != address(0), "Issuer: invalid wallet approver address");
        address previous = walletApprover;
        walletApprover = newWalletApprover;
        emit WalletApproverChanged(previous, newWalletApprover);
    }
}
