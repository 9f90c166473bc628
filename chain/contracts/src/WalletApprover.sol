// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IIssuer} from "./Issuer.sol";

/// @title WalletApprover
/// @notice Batch front end for approving and suspending wallets on issuers. It must be the
///         issuer's wallet approver for the calls to succeed. Each wallet is handled on its own:
///         one failing wallet emits an event with success = false and does not revert the batch.
/// @dev Only issuers the owner registered (setIssuerStatus) are ever called: a batch for any
///      other issuer reverts before it calls anything, so the platform's gas estimate refuses it
///      and nothing is sent. What an issuer contract says about itself (its walletApprover) is
///      not a reason to trust it. The owner should be an operator key distinct from the
///      approvers it allows (the platform's executor).
contract WalletApprover is Ownable {
    mapping(address => bool) private allowedApprovers;
    mapping(address => bool) private registeredIssuers;

    event ApproveWallet(address indexed issuer, address indexed wallet, bool success);
    event SuspendWallet(address indexed issuer, address indexed wallet, bool success);
    event UpdateApproverStatus(address indexed approver, bool allowed);
    event IssuerStatus(address indexed issuer, bool registered);

    constructor() Ownable(msg.sender) {}

    modifier onlyAllowedApprover() {
        require(isAllowedToApprove(msg.sender), "WalletApprover: caller is not allowed to approve");
        _;
    }

    /// @notice The owner is always allowed; other callers when enabled by the owner.
    function isAllowedToApprove(address approver) public view returns (bool) {
        return approver == owner() || allowedApprovers[approver];
    }

    function updateApproverStatus(address approver, bool allowed) external onlyOwner {
        require(approver != address(0), "WalletApprover: invalid approver address");
        allowedApprovers[approver] = allowed;
        emit UpdateApproverStatus(approver, allowed);
    }

    /// @notice Registers (or unregisters) an issuer the platform may approve wallets on.
    function setIssuerStatus(address issuer, bool registered) external onlyOwner {
        require(issuer != address(0), "WalletApprover: invalid issuer address");
        registeredIssuers[issuer] = registered;
        emit IssuerStatus(issuer, registered);
    }

    function isRegisteredIssuer(address issuer) external view returns (bool) {
        return registeredIssuers[issuer];
    }

    modifier onlyRegisteredIssuer(address issuer) {
        require(registeredIssuers[issuer], "WalletApprover: issuer not registered");
        _;
    }

    function approveWallets(address issuer, address[] calldata wallets)
        external
        onlyAllowedApprover
        onlyRegisteredIssuer(issuer)
    {
        bool isContract = issuer.code.length > 0;
        for (uint256 i = 0; i < wallets.length; i++) {
            bool success = false;
            if (isContract) {
                try IIssuer(issuer).approveWallet(wallets[i]) {
                    success = true;
                } catch {}
            }
            emit ApproveWallet(issuer, wallets[i], success);
        }
    }

    function suspendWallets(address issuer, address[] calldata wallets)
        external
        onlyAllowedApprover
        onlyRegisteredIssuer(issuer)
    {
        bool isContract = issuer.code.length > 0;
        for (uint256 i = 0; i < wallets.length; i++) {
            bool success = false;
            if (isContract) {
                try IIssuer(issuer).suspendWallet(wallets[i]) {
                    success = true;
                } catch {}
            }
            emit SuspendWallet(issuer, wallets[i], success);
        }
    }
}
